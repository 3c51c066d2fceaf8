"""`python -m dmp.cli`."""

from dmp.cli import main

main()
