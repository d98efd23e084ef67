// The changelog lines `changeset version` writes. A package's entry says what changed in that package
// (each changeset names one package) and, in one line, which dmasim packages it now depends on: the
// packages are versioned together, so listing every other package's changesets would repeat them all.
"use strict";

/** One changeset: its summary as a list item, later lines indented under it. */
async function getReleaseLine(changeset) {
  const [first, ...rest] = changeset.summary.split("\n").map((l) => l.trimEnd());
  return [`- ${first}`, ...rest.map((l) => (l === "" ? "" : `  ${l}`))].join("\n");
}

/** All dependency bumps of a release as one item. */
async function getDependencyReleaseLine(_changesets, dependenciesUpdated) {
  if (dependenciesUpdated.length === 0) return "";
  const deps = dependenciesUpdated.map((d) => `\`${d.name}@${d.newVersion}\``).join(", ");
  return `- Depends on ${deps}.`;
}

module.exports = { default: { getReleaseLine, getDependencyReleaseLine } };
