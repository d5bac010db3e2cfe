"""Entry point: ``python -m sageport.runtime --model-dir DIR --unix-socket PATH``."""

from sageport.runtime.supervisor import main

raise SystemExit(main())
