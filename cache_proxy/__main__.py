from cache_proxy.cli import main

raise SystemExit(main())
