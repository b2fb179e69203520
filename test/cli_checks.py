"""The command line on bad input: a clear message and exit code 1, never a crash or a half-written file."""


def run_all(T, exes):
    T.section("command line")
