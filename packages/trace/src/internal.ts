// `@dmasim/trace/internal`: what the packages of dmasim need from trace beyond its API and a user of the
// model must not touch. Today one key: the counters' backing array, for the few producers that add to
// it directly on a hot path (see `counterValues`).
export { counterValues } from "./counters.js";
