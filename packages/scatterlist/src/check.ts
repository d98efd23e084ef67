import { DmaDevice } from "@dmasim/dma";
import { ScatterlistError } from "./errors.js";
import { SgTable, checkSgTableUsable } from "./sg-table.js";

// The first checks of every DMA entry point of the package: the device and the table must be the real
// thing before any field of them is read (undefined, a BDF, a look-alike object are bad input, not a
// TypeError from inside).

export function checkSgDevice(fn: string, dev: unknown): asserts dev is DmaDevice {
  if (!(dev instanceof DmaDevice)) throw new ScatterlistError("EINVAL", fn, "dev", dev, "a DmaDevice from kernel.device(bdf)");
  if (!dev.bound) throw new ScatterlistError("EINVAL", fn, "dev", dev.bdf, "a bound device: this one was unbound; look it up again with kernel.device()");
}

export function checkSgTable(fn: string, table: unknown): asserts table is SgTable {
  if (!(table instanceof SgTable)) throw new ScatterlistError("EINVAL", fn, "table", table, "an SgTable from sgAllocTable or sgAllocTableFromPages");
  checkSgTableUsable(fn, table);
}
