"""``python -m vltool`` (and so ``accelerate launch -m vltool ...``) runs the CLI."""

from vltool.cli import main

if __name__ == "__main__":
    main()
