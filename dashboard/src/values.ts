// Converting between Postgres column types and what the grid shows and edits.

/** How a column's values are shown and edited. */
export type Kind = "json" | "array" | "bool" | "number" | "text";

export function kindOf(type: string): Kind {
  if (type.endsWith("[]")) return "array";
  if (type === "json" || type === "jsonb") return "json";
  if (type === "boolean") return "bool";
  if (/^(smallint|integer|bigint|real|double precision|numeric|decimal)/.test(type)) return "number";
  return "text";
}

/** The text shown in a cell (and the starting text of its editor). */
export function display(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** Parses the editor's text into the JSON value sent to the data API; throws on bad input. */
export function parseInput(text: string, kind: Kind): unknown {
  switch (kind) {
    case "json":
    case "array": {
      const v = JSON.parse(text);
      if (kind === "array" && !Array.isArray(v)) throw new Error("An array value must be a JSON array, e.g. [1, 2].");
      return v;
    }
    case "bool":
      if (/^(true|t|yes|1)$/i.test(text.trim())) return true;
      if (/^(false|f|no|0)$/i.test(text.trim())) return false;
      throw new Error("A boolean is true or false.");
    case "number": {
      const t = text.trim();
      if (t === "" || Number.isNaN(Number(t))) throw new Error(`"${text}" is not a number.`);
      // Big integers and numerics keep their digits: send them as text, Postgres parses them.
      return Number.isSafeInteger(Number(t)) || !/^-?\d+$/.test(t) ? Number(t) : t;
    }
    default:
      return text;
  }
}

/** Quotes a value for a PostgREST list (`in.(...)`) or logic tree (`or=(...)`). */
export function quoteListValue(v: unknown): string {
  const s = display(v);
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}
