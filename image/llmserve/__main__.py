"""`python -m llmserve ...` runs the same command line as the `llmserve` console script."""

from llmserve.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
