from .rehearse import main

raise SystemExit(main())
