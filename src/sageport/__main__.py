"""``python -m sageport`` runs the command line."""

from sageport.cli import main

main()
