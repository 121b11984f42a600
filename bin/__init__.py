"""The command-line programs, installed as the package ``keras_frcnn_bin`` so that
setup.py can declare their console scripts (frcnn-train, frcnn-evaluate, ...)."""
