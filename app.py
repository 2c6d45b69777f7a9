"""The Space's entry point: ``python app.py`` serves the cvdemo app from checkpoints/ (see webapp/)."""
from webapp import main

if __name__ == "__main__":
    main()
