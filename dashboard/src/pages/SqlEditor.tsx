// SQL editor: runs guarded admin SQL (POST /admin/v1/sql) as the project
// owner; results in a grid per statement, errors with their position,
// `EXPLAIN ANALYZE` view, and a history of this session's queries (kept in
// memory: queries can hold secrets).
import { useState } from "react";
import { Alert, Badge, Button, Checkbox, Group, NavLink, ScrollArea, Stack, Table, Text, Textarea, Title } from "@mantine/core";
import { ApiError } from "../api/client";
import type { SqlResult } from "../api/types";
import { useProject } from "../project";
import { display } from "../values";

interface Run {
  query: string;
  explain: boolean;
  at: Date;
  ms: number;
  ok: boolean;
}

const history: Run[] = [];

function ResultGrid({ result, index }: { result: SqlResult; index: number }) {
  if (!result.columns.length) {
    return (
      <Text size="sm">
        <Badge variant="light" mr="xs">{result.command}</Badge>
        {result.row_count} row(s) affected
      </Text>
    );
  }
  return (
    <Stack gap={4}>
      <Text size="sm" c="dimmed">
        <Badge variant="light" mr="xs">{result.command}</Badge>
        {result.row_count} row(s){result.truncated ? " (truncated)" : ""}
      </Text>
      <ScrollArea type="auto" mah={480}>
        <Table striped withTableBorder withColumnBorders aria-label={`Result ${index + 1}`} stickyHeader>
          <Table.Thead>
            <Table.Tr>
              {result.columns.map((c) => (
                <Table.Th key={c.name}>
                  {c.name}
                  <Text size="xs" c="dimmed" className="mono">{c.type}</Text>
                </Table.Th>
              ))}
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {result.rows.map((r, i) => (
              <Table.Tr key={i}>
                {result.columns.map((c) => {
                  const v = (r as Record<string, unknown>)[c.name];
                  return (
                    <Table.Td key={c.name} className={`mono${v === null ? " null" : ""}`} style={{ whiteSpace: "pre" }}>
                      {display(v)}
                    </Table.Td>
                  );
                })}
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </ScrollArea>
    </Stack>
  );
}

/** The plan of an `explain` run, as an indented tree. */
function PlanView({ result }: { result: SqlResult }) {
  const first = result.rows[0] as Record<string, unknown> | undefined;
  const value = first ? Object.values(first)[0] : undefined;
  const plans = (Array.isArray(value) ? value : typeof value === "string" ? JSON.parse(value) : []) as { Plan?: unknown; "Execution Time"?: number }[];
  const lines: string[] = [];
  const walk = (node: Record<string, unknown>, depth: number) => {
    const cost = `cost=${node["Startup Cost"]}..${node["Total Cost"]} rows=${node["Plan Rows"]}`;
    const actual = node["Actual Total Time"] !== undefined ? ` actual=${node["Actual Total Time"]}ms rows=${node["Actual Rows"]}` : "";
    const on = node["Relation Name"] ? ` on ${node["Relation Name"]}` : "";
    lines.push(`${"  ".repeat(depth)}${depth ? "-> " : ""}${node["Node Type"]}${on} (${cost}${actual})`);
    for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child, depth + 1);
  };
  for (const p of plans) {
    if (p.Plan) walk(p.Plan as Record<string, unknown>, 0);
    if (p["Execution Time"] !== undefined) lines.push(`Execution time: ${p["Execution Time"]} ms`);
  }
  return (
    <Text component="pre" className="mono" aria-label="Query plan" style={{ whiteSpace: "pre", overflow: "auto" }}>
      {lines.join("\n") || JSON.stringify(value, null, 2)}
    </Text>
  );
}

export default function SqlEditor() {
  const api = useProject();
  const [query, setQuery] = useState("select now();");
  const [explain, setExplain] = useState(false);
  const [results, setResults] = useState<SqlResult[] | null>(null);
  const [error, setError] = useState<ApiError | Error | null>(null);
  const [busy, setBusy] = useState(false);
  const [, setTick] = useState(0);
  async function run() {
    setBusy(true);
    setError(null);
    const started = performance.now();
    let ok = false;
    try {
      // One statement answers its result, several an array of them.
      const r = await api.admin<SqlResult | SqlResult[]>("/admin/v1/sql", { method: "POST", body: { query, explain } });
      setResults(Array.isArray(r) ? r : [r]);
      ok = true;
    } catch (e) {
      setResults(null);
      setError(e instanceof Error ? e : new Error(String(e)));
    } finally {
      history.unshift({ query, explain, at: new Date(), ms: Math.round(performance.now() - started), ok });
      history.splice(50);
      setTick((t) => t + 1);
      setBusy(false);
    }
  }
  const position = error instanceof ApiError ? /position (\d+)/.exec(error.details ?? "")?.[1] : undefined;
  return (
    <Group align="flex-start" wrap="nowrap">
      <Stack style={{ flex: 1, minWidth: 0 }}>
        <Title order={2} size="h3">SQL editor</Title>
        <Textarea
          label="Query"
          description="Runs as the project owner in one transaction. Ctrl+Enter runs."
          autosize
          minRows={6}
          maxRows={20}
          classNames={{ input: "mono" }}
          value={query}
          onChange={(e) => setQuery(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
              e.preventDefault();
              void run();
            }
          }}
          spellCheck={false}
        />
        <Group>
          <Button onClick={run} loading={busy}>Run</Button>
          <Checkbox label="Explain (ANALYZE, rolled back)" checked={explain} onChange={(e) => setExplain(e.currentTarget.checked)} />
        </Group>
        {error && (
          <Alert color="red" title="Query failed" role="alert">
            <Text size="sm">{error.message}</Text>
            {error instanceof ApiError && error.details && <Text size="sm" c="dimmed">{error.details}</Text>}
            {error instanceof ApiError && error.hint && <Text size="sm" c="dimmed">Hint: {error.hint}</Text>}
            {position && (
              <Text component="pre" className="mono" size="xs" mt="xs">
                {query.slice(Math.max(0, Number(position) - 40), Number(position) - 1)}
                <mark>{query.slice(Number(position) - 1, Number(position) + 9) || " "}</mark>
              </Text>
            )}
          </Alert>
        )}
        {results?.map((r, i) => (explain ? <PlanView key={i} result={r} /> : <ResultGrid key={i} result={r} index={i} />))}
      </Stack>
      <Stack w={240} gap={2} visibleFrom="md" component="aside" aria-label="History">
        <Text fw={600} size="sm">History</Text>
        {history.length === 0 && <Text size="xs" c="dimmed">Queries you run appear here.</Text>}
        {history.map((h, i) => (
          <NavLink component="button"
            key={i}
            label={<Text size="xs" className="mono" lineClamp={2}>{h.query}</Text>}
            description={`${h.at.toLocaleTimeString()} · ${h.ms} ms${h.ok ? "" : " · failed"}${h.explain ? " · explain" : ""}`}
            onClick={() => {
              setQuery(h.query);
              setExplain(h.explain);
            }}
          />
        ))}
      </Stack>
    </Group>
  );
}
