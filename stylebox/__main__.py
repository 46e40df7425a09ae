from stylebox.cli import main

raise SystemExit(main())
