"""The error every layer raises for unusable user input, and the exit codes of every command (the README's table)."""

EXIT_PARTIAL = 1  # some items of a batch failed; they are recorded and the rest was done
EXIT_USAGE = 2  # a bad option or value, an unknown model name (argparse uses 2 too)
EXIT_INPUT = 3  # a file, folder, label, checkpoint, config or download that cannot be used


class InputError(ValueError):
    """A user's input (a file, a folder, a label, an option) cannot be used; the message names it and the fix."""


class UsageError(ValueError):
    """An option's value cannot be right whatever the files are (exit 2, as argparse's own usage errors)."""
