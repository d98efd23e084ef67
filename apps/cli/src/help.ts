export const HELP = `dmasim — an executable model of the Linux DMA mapping stack

Usage:
  dmasim demo                      run every built-in scenario, classic vs two-step, strict vs lazy
  dmasim run <scenario>            run one scenario (a file, or a built-in name) once
  dmasim compare <scenario>        sweep a scenario over APIs and IOMMU modes, print a results table
  dmasim explore <scenario>        open the explorer page on the scenario's recorded runs: served on
                                   127.0.0.1 (a free port; the URL is printed; Ctrl-C stops), or with
                                   --out <dir> written as a static site that opens from disk
  dmasim calibrate                 the calibration scenarios priced on every cost profile: modelled
                                   IOPS of a multi-queue host, ratios, and published figures' errors
  dmasim list                      the built-in scenarios, one line each
  dmasim show <name>               print a built-in scenario as JSON (a starting point for a file)

Options:
  --api <list>       classic, two-step (run: one value; compare: a comma-separated list)
  --iommu <list>     strict, lazy, passthrough, off (run: one value; compare: a list)
  --profile <name>   run, compare: the cost profile (vtd, vtd-caching-mode, smmuv3, amd-vi,
                     virtio-iommu, default); calibrate: a comma-separated list of them
  --expect <f=v>     calibrate: a figure you measured or read, [profile/]case.iops=N or
                     [profile/]case.ratio=N (repeatable); shows the model's error against it
  --sweep            calibrate: scale each assumed cost row (and the hosts' CPU time per I/O)
                     ×0.25 and ×4 and say which conclusions survive
  --jobs <n>         demo, compare: worker threads to run the configurations on (default: every
                     core; 1 runs them in-process, one after the other); the output is the same
  --isolate-workers  demo, compare: a fresh worker thread per configuration, its own JIT state
                     (by default a thread runs configuration after configuration, loading the model once)
  --out <dir>        explore: write the page to <dir> (new or empty; --force writes into a non-empty one)
  --port <n>         explore: serve on this port of 127.0.0.1 (default: a free one)
  --force            explore --out: write into a directory that has files
  --json             machine-readable output on stdout
  --trace <file>     write the run's events as a Chrome trace (open it at https://ui.perfetto.dev)
  --record <file>    run, compare: write a run log (format "dmasim-run-log", version 2: the scenario,
                     every trace event of each run, its result) as JSON
  -h, --help         this text
  --version          the version of dmasim

Exit status: 0 when every check held, 1 when a check failed (wrong bytes, a fault, a leak),
2 on bad usage or a bad scenario, 70 on an internal error of dmasim (please report it).
--json output: {"format": "dmasim-cli", "version": 1, "command", ...}; see the README.

Examples:
  dmasim demo
  dmasim list
  dmasim show nvme-4k-randread > my.json && dmasim run my.json --iommu lazy
  dmasim run sg-256 --api classic --trace sg.json
  dmasim explore lazy-stale-window
  dmasim explore p2p-acs-redirect --out site && open site/index.html
  dmasim compare packages/scenario/examples/nvme-mixed.json --api classic,two-step --iommu strict,lazy,off
  dmasim compare nvme-4k-randread --profile vtd-caching-mode
  dmasim calibrate --profile vtd,smmuv3 --expect smmuv3/nvme-4k-strict.ratio=0.17
  dmasim compare p2p-acs-redirect --json | jq '.results[] | {api, iommu, ok, modelledNs}'
`;
