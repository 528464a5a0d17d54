from mpimpy.cli import main

raise SystemExit(main())
