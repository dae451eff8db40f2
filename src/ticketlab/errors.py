"""The one exception type that means "the user can fix this": the CLI prints it as one line, exit 2."""


class UserError(Exception):
    """Bad input (names, values, files, directories). The message says what to do."""
