from ticketforge.cli import main

raise SystemExit(main())
