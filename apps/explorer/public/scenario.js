// The scenario this page opens with. `dmasim explore <scenario>` replaces this file; the default offers
// the built-in scenarios in a picker.
globalThis.DMASIM_EXPLORE = { scenario: null, runLog: null };
