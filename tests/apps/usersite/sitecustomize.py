"""A program's own sitecustomize: astrace must still run it."""
import os

if os.environ.get("SITECUSTOMIZE_MARK"):
    with open(os.environ["SITECUSTOMIZE_MARK"], "w") as f:
        f.write("ran")
