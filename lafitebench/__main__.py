"""``python -m lafitebench`` (and ``torchrun ... -m lafitebench``): the command line."""
from lafitebench.cli import app

if __name__ == "__main__":
    app(prog_name="lafitebench")
