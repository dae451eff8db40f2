"""Generate mutmut's mutants (``mutants/`` and its ``*.py.meta`` files) without running any, so that
``sample.py`` can draw names from them before ``mutmut run NAME...`` runs only those."""

import os

import mutmut.__main__ as mutmut


def main() -> None:
    mutmut.set_mutant_under_test("mutant_generation")
    os.makedirs("mutants", exist_ok=True)
    mutmut.copy_src_dir()
    mutmut.copy_also_copy_files()
    mutmut.setup_source_paths()
    mutmut.store_lines_covered_by_tests()
    print(mutmut.create_mutants(os.cpu_count() or 2))


if __name__ == "__main__":
    main()
