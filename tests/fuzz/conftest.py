# The atheris target is run by hand (see its docstring), never collected by pytest: it
# imports atheris, which the test extra does not install.
collect_ignore = ["fuzz_load.py"]
