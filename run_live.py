from live_seg.cli import main

raise SystemExit(main())
