// Table editor: the tables of the exposed schemas and a grid that pages on
// the server through the PostgREST-compatible data API (service-role key):
// only one page of rows is ever loaded, the total comes from
// `Prefer: count=estimated` (cheap on huge tables). Sort, filter, inline edit,
// insert, delete, foreign-key lookups, JSON/array cells, CSV export.
import { useCallback, useEffect, useMemo, useState } from "react";
import {
  ActionIcon,
  Alert,
  Anchor,
  Badge,
  Button,
  Checkbox,
  Code,
  Flex,
  Group,
  Loader,
  Modal,
  NavLink,
  Pagination,
  Popover,
  ScrollArea,
  Select,
  Stack,
  Table,
  Text,
  TextInput,
  Textarea,
  Title,
  UnstyledButton,
} from "@mantine/core";
import { useNavigate, useParams } from "react-router";
import { type ColumnDef as GridColumn, type SortingState, flexRender, getCoreRowModel, useReactTable } from "@tanstack/react-table";
import { errorText } from "../api/client";
import type { Column, ForeignKey, TableInfo } from "../api/types";
import { useProject, type ProjectApi } from "../project";
import { display, kindOf, parseInput, quoteListValue, type Kind } from "../values";
import { ConfirmDelete, notifyError, notifyOk } from "../components/common";

type Row = Record<string, unknown>;

interface Filter {
  column: string;
  op: string;
  value: string;
}

const OPS = ["eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "is", "in"];
const PAGE_SIZES = ["25", "50", "100", "250"];

/** The query string of the current filter and sort (no paging). */
function queryOf(filters: Filter[], sorting: SortingState): URLSearchParams {
  const q = new URLSearchParams();
  q.set("select", "*");
  for (const f of filters) {
    if (!f.column) continue;
    const value = f.op === "in" ? `(${f.value.split(",").map((v) => quoteListValue(v.trim())).join(",")})` : f.value;
    q.append(f.column, `${f.op}.${value}`);
  }
  if (sorting.length) q.set("order", sorting.map((s) => `${s.id}.${s.desc ? "desc" : "asc"}`).join(","));
  return q;
}

/** `?pk=eq.v` filters that select one row. */
function rowFilter(table: TableInfo, row: Row): URLSearchParams {
  const q = new URLSearchParams();
  for (const k of table.primary_key) q.append(k, `eq.${display(row[k])}`);
  return q;
}

function fkOf(table: TableInfo, column: string): ForeignKey | undefined {
  return table.foreign_keys.find((f) => f.columns.length === 1 && f.columns[0] === column);
}

/** A popover showing the row a foreign-key value points at. */
function FkLookup({ api, fk, value }: { api: ProjectApi; fk: ForeignKey; value: unknown }) {
  const [row, setRow] = useState<Row | null | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const navigate = useNavigate();
  const load = () => {
    const q = new URLSearchParams({ select: "*", limit: "1" });
    q.set(fk.target_columns[0], `eq.${display(value)}`);
    api
      .service<Row[]>(`/rest/v1/${encodeURIComponent(fk.target_table)}?${q}`, { headers: { "accept-profile": fk.target_schema } })
      .then((rows) => setRow(rows[0] ?? null))
      .catch((e) => setError(errorText(e)));
  };
  return (
    <Popover width={360} position="bottom-start" withArrow shadow="md" onOpen={load}>
      <Popover.Target>
        <ActionIcon size="xs" variant="subtle" aria-label={`Show the referenced ${fk.target_table} row`}>
          <span aria-hidden>↗</span>
        </ActionIcon>
      </Popover.Target>
      <Popover.Dropdown>
        <Stack gap={4}>
          <Text size="sm" fw={600}>{fk.target_schema}.{fk.target_table}</Text>
          {error && <Text c="red" size="sm">{error}</Text>}
          {row === undefined && !error && <Loader size="xs" />}
          {row === null && <Text size="sm">No row has {fk.target_columns[0]} = {display(value)}.</Text>}
          {row && (
            <Table withRowBorders={false} verticalSpacing={2}>
              <Table.Tbody>
                {Object.entries(row).map(([k, v]) => (
                  <Table.Tr key={k}>
                    <Table.Td><Text size="xs" c="dimmed">{k}</Text></Table.Td>
                    <Table.Td><Text size="xs" className="mono">{display(v)}</Text></Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          )}
          <Anchor size="sm" onClick={() => navigate(`/projects/${api.ref}/tables/${fk.target_schema}/${fk.target_table}`)}>
            Open {fk.target_table}
          </Anchor>
        </Stack>
      </Popover.Dropdown>
    </Popover>
  );
}

/** The editor of one JSON or array value (too big for a cell). */
function JsonEditor(props: { title: string; value: unknown; kind: Kind; onSave: (v: unknown) => Promise<void>; onClose: () => void }) {
  const [text, setText] = useState(() => (props.value === null ? "null" : JSON.stringify(props.value, null, 2)));
  const [error, setError] = useState<string | null>(null);
  return (
    <Modal opened onClose={props.onClose} title={props.title} size="lg">
      <Stack>
        <Textarea
          label="JSON value"
          autosize
          minRows={6}
          maxRows={20}
          classNames={{ input: "mono" }}
          value={text}
          onChange={(e) => setText(e.currentTarget.value)}
          error={error}
          data-autofocus
        />
        <Group justify="flex-end">
          <Button variant="default" onClick={props.onClose}>Cancel</Button>
          <Button
            onClick={async () => {
              try {
                const v = text.trim() === "null" ? null : parseInput(text, props.kind);
                await props.onSave(v);
                props.onClose();
              } catch (e) {
                setError(errorText(e));
              }
            }}
          >
            Save
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}

/** Insert a row: one input per column; empty inputs take the column default. */
function InsertRow({ api, table, onClose, onInserted }: { api: ProjectApi; table: TableInfo; onClose: () => void; onInserted: () => void }) {
  const editable = table.columns.filter((c) => !c.generated);
  const [values, setValues] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function submit(e: React.FormEvent) {
    e.preventDefault();
    setError(null);
    setBusy(true);
    try {
      const body: Row = {};
      for (const c of editable) {
        const text = values[c.name];
        if (text === undefined || text === "") continue;
        body[c.name] = text === "NULL" ? null : parseInput(text, kindOf(c.type));
      }
      await api.service(`/rest/v1/${encodeURIComponent(table.name)}`, {
        method: "POST",
        body,
        headers: { "content-profile": table.schema, prefer: "return=minimal" },
      });
      notifyOk("Row inserted");
      onInserted();
      onClose();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <Modal opened onClose={onClose} title={`Insert into ${table.name}`} size="lg">
      <form onSubmit={submit}>
        <Stack>
          {error && <Alert color="red" title="Insert failed">{error}</Alert>}
          {editable.map((c) => {
            const kind = kindOf(c.type);
            const fk = fkOf(table, c.name);
            const props = {
              label: `${c.name}`,
              description: [c.type, fk ? `→ ${fk.target_table}.${fk.target_columns[0]}` : null, c.default ? `default ${c.default}` : c.identity ? "identity" : null, c.nullable ? null : "required"]
                .filter(Boolean)
                .join(" · "),
              value: values[c.name] ?? "",
              onChange: (e: React.ChangeEvent<HTMLInputElement | HTMLTextAreaElement>) => {
                const v = e.currentTarget.value;
                setValues((old) => ({ ...old, [c.name]: v }));
              },
            };
            return kind === "json" || kind === "array" ? (
              <Textarea key={c.name} {...props} classNames={{ input: "mono" }} autosize minRows={2} />
            ) : (
              <TextInput key={c.name} {...props} />
            );
          })}
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>Cancel</Button>
            <Button type="submit" loading={busy}>Insert</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

/** A cell: shows its value; double-click or Enter edits it in place (JSON and arrays in a dialog). */
function Cell(props: { api: ProjectApi; table: TableInfo; column: Column; row: Row; onSaved: (row: Row) => void }) {
  const { api, table, column, row } = props;
  const value = row[column.name];
  const kind = kindOf(column.type);
  const fk = fkOf(table, column.name);
  const [editing, setEditing] = useState(false);
  const [text, setText] = useState("");
  const canEdit = table.primary_key.length > 0 && !column.generated;
  const save = async (v: unknown) => {
    const q = rowFilter(table, row);
    const updated = await api.service<Row[]>(`/rest/v1/${encodeURIComponent(table.name)}?${q}`, {
      method: "PATCH",
      body: { [column.name]: v },
      headers: { "content-profile": table.schema, "accept-profile": table.schema, prefer: "return=representation" },
    });
    if (updated[0]) props.onSaved(updated[0]);
  };
  const startEdit = () => {
    if (!canEdit) return;
    setText(value === null || value === undefined ? "" : display(value));
    setEditing(true);
  };
  if (editing && kind !== "json" && kind !== "array") {
    return (
      <TextInput
        size="xs"
        autoFocus
        aria-label={`Edit ${column.name}`}
        value={text}
        onChange={(e) => setText(e.currentTarget.value)}
        onBlur={() => setEditing(false)}
        onKeyDown={async (e) => {
          if (e.key === "Escape") setEditing(false);
          if (e.key === "Enter") {
            e.preventDefault();
            try {
              await save(text === "" && column.nullable && kind !== "text" ? null : parseInput(text, kind));
              setEditing(false);
            } catch (err) {
              notifyError(err, "Update failed");
            }
          }
        }}
      />
    );
  }
  return (
    <Group gap={4} wrap="nowrap">
      {canEdit ? (
        <UnstyledButton
          className={`grid-cell mono${value === null || value === undefined ? " null" : ""}`}
          aria-label={`${column.name}: ${display(value)}`}
          onDoubleClick={startEdit}
          onKeyDown={(e) => {
            if (e.key === "Enter") startEdit();
          }}
          title="Double-click or Enter to edit"
        >
          {display(value)}
        </UnstyledButton>
      ) : (
        <span className={`grid-cell mono${value === null || value === undefined ? " null" : ""}`}>{display(value)}</span>
      )}
      {fk && value !== null && value !== undefined && <FkLookup api={api} fk={fk} value={value} />}
      {editing && (kind === "json" || kind === "array") && (
        <JsonEditor title={`${table.name}.${column.name}`} value={value} kind={kind} onSave={save} onClose={() => setEditing(false)} />
      )}
    </Group>
  );
}

function Grid({ api, table }: { api: ProjectApi; table: TableInfo }) {
  const [rows, setRows] = useState<Row[]>([]);
  const [total, setTotal] = useState<number | null>(null);
  const [page, setPage] = useState(1);
  const [pageSize, setPageSize] = useState(50);
  const [sorting, setSorting] = useState<SortingState>(() => table.primary_key.map((id) => ({ id, desc: false })));
  const [filters, setFilters] = useState<Filter[]>([]);
  const [draft, setDraft] = useState<Filter>({ column: table.columns[0]?.name ?? "", op: "eq", value: "" });
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<Set<number>>(new Set());
  const [inserting, setInserting] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [reload, setReload] = useState(0);

  useEffect(() => {
    const ctl = new AbortController();
    setLoading(true);
    const q = queryOf(filters, sorting);
    q.set("limit", String(pageSize));
    q.set("offset", String((page - 1) * pageSize));
    api
      .service<Response>(`/rest/v1/${encodeURIComponent(table.name)}?${q}`, {
        headers: { "accept-profile": table.schema, prefer: "count=estimated" },
        raw: true,
        signal: ctl.signal,
      })
      .then(async (resp) => {
        const range = resp.headers.get("content-range") ?? "";
        const t = Number(range.split("/")[1]);
        setTotal(Number.isFinite(t) ? t : null);
        setRows((await resp.json()) as Row[]);
        setSelected(new Set());
        setError(null);
      })
      .catch((e) => {
        if (!ctl.signal.aborted) setError(errorText(e));
      })
      .finally(() => {
        if (!ctl.signal.aborted) setLoading(false);
      });
    return () => ctl.abort();
  }, [api.ref, table.schema, table.name, page, pageSize, sorting, filters, reload]);

  const hasPk = table.primary_key.length > 0;
  const columns = useMemo<GridColumn<Row>[]>(
    () =>
      table.columns.map((c) => ({
        id: c.name,
        accessorFn: (r: Row) => r[c.name],
        header: c.name,
        meta: c,
      })),
    [table],
  );
  const grid = useReactTable({
    data: rows,
    columns,
    getCoreRowModel: getCoreRowModel(),
    manualSorting: true,
    manualPagination: true,
    enableMultiSort: true,
    // Ascending first, whatever the column type (TanStack starts numbers descending).
    sortDescFirst: false,
    state: { sorting },
    onSortingChange: (s) => {
      setSorting(s);
      setPage(1);
    },
    pageCount: total === null ? -1 : Math.max(1, Math.ceil(total / pageSize)),
  });

  const exportCsv = async () => {
    try {
      const resp = await api.service<Response>(`/rest/v1/${encodeURIComponent(table.name)}?${queryOf(filters, sorting)}`, {
        headers: { "accept-profile": table.schema, accept: "text/csv" },
        raw: true,
      });
      const blob = await resp.blob();
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = `${table.name}.csv`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    } catch (e) {
      notifyError(e, "Export failed");
    }
  };

  const deleteSelected = async () => {
    const chosen = rows.filter((_, i) => selected.has(i));
    const q = new URLSearchParams();
    if (table.primary_key.length === 1) {
      const k = table.primary_key[0];
      q.set(k, `in.(${chosen.map((r) => quoteListValue(r[k])).join(",")})`);
    } else {
      const one = (r: Row) => `and(${table.primary_key.map((k) => `${k}.eq.${quoteListValue(r[k])}`).join(",")})`;
      q.set("or", `(${chosen.map(one).join(",")})`);
    }
    await api.service(`/rest/v1/${encodeURIComponent(table.name)}?${q}`, {
      method: "DELETE",
      headers: { "content-profile": table.schema },
    });
    notifyOk(`${chosen.length} row(s) deleted`);
    setReload((n) => n + 1);
  };

  const pages = total === null ? page + (rows.length === pageSize ? 1 : 0) : Math.max(1, Math.ceil(total / pageSize));
  return (
    <Stack gap="sm">
      <Group justify="space-between" wrap="wrap">
        <Group gap="xs">
          <Title order={2} size="h3">{table.schema}.{table.name}</Title>
          {table.rls_enabled ? <Badge variant="light">RLS on</Badge> : <Badge color="orange" variant="light">RLS off</Badge>}
          {!hasPk && <Badge color="gray" variant="light">no primary key: read-only</Badge>}
        </Group>
        <Group gap="xs">
          <Button size="xs" onClick={() => setInserting(true)}>Insert row</Button>
          <Button size="xs" color="red" variant="light" disabled={!selected.size} onClick={() => setDeleting(true)}>
            Delete {selected.size || ""} selected
          </Button>
          <Button size="xs" variant="default" onClick={exportCsv}>Export CSV</Button>
        </Group>
      </Group>
      <Group gap="xs" align="flex-end" wrap="wrap">
        <Select
          size="xs"
          label="Column"
          data={table.columns.map((c) => c.name)}
          value={draft.column}
          onChange={(v) => setDraft((d) => ({ ...d, column: v ?? "" }))}
          w={160}
        />
        <Select size="xs" label="Operator" data={OPS} value={draft.op} onChange={(v) => setDraft((d) => ({ ...d, op: v ?? "eq" }))} w={100} />
        <TextInput
          size="xs"
          label="Value"
          value={draft.value}
          onChange={(e) => {
            const value = e.currentTarget.value;
            setDraft((d) => ({ ...d, value }));
          }}
          placeholder={draft.op === "is" ? "null, true, false" : draft.op === "in" ? "a, b, c" : ""}
          w={180}
        />
        <Button
          size="xs"
          variant="light"
          onClick={() => {
            if (!draft.column) return;
            setFilters((f) => [...f, draft]);
            setPage(1);
          }}
        >
          Add filter
        </Button>
        {filters.map((f, i) => (
          <Badge
            key={`${f.column}-${i}`}
            variant="outline"
            size="lg"
            rightSection={
              <ActionIcon
                size="xs"
                variant="transparent"
                aria-label={`Remove filter ${f.column} ${f.op} ${f.value}`}
                onClick={() => {
                  setFilters((all) => all.filter((_, j) => j !== i));
                  setPage(1);
                }}
              >
                ×
              </ActionIcon>
            }
          >
            {f.column} {f.op} {f.value}
          </Badge>
        ))}
      </Group>
      {error && <Alert color="red" title="Could not load rows">{error}</Alert>}
      <ScrollArea type="auto">
        <Table striped highlightOnHover withTableBorder withColumnBorders aria-label={`Rows of ${table.name}`} aria-busy={loading}>
          <Table.Thead>
            {grid.getHeaderGroups().map((hg) => (
              <Table.Tr key={hg.id}>
                <Table.Th w={36}>
                  <Checkbox
                    aria-label="Select all rows"
                    disabled={!hasPk || !rows.length}
                    checked={rows.length > 0 && selected.size === rows.length}
                    onChange={(e) => setSelected(e.currentTarget.checked ? new Set(rows.map((_, i) => i)) : new Set())}
                  />
                </Table.Th>
                {hg.headers.map((h) => {
                  const c = h.column.columnDef.meta as Column;
                  const sort = h.column.getIsSorted();
                  return (
                    <Table.Th key={h.id} aria-sort={sort === "asc" ? "ascending" : sort === "desc" ? "descending" : "none"}>
                      <Anchor
                        component="button"
                        type="button"
                        c="inherit"
                        fw={600}
                        size="sm"
                        onClick={h.column.getToggleSortingHandler()}
                        aria-label={`Sort by ${c.name}`}
                      >
                        {flexRender(h.column.columnDef.header, h.getContext())} {sort === "asc" ? "▲" : sort === "desc" ? "▼" : ""}
                      </Anchor>
                      <Text size="xs" c="dimmed" className="mono">{c.type}</Text>
                    </Table.Th>
                  );
                })}
              </Table.Tr>
            ))}
          </Table.Thead>
          <Table.Tbody>
            {grid.getRowModel().rows.map((r) => (
              <Table.Tr key={r.id}>
                <Table.Td>
                  <Checkbox
                    aria-label={`Select row ${r.index + 1}`}
                    disabled={!hasPk}
                    checked={selected.has(r.index)}
                    onChange={(e) => {
                      const on = e.currentTarget.checked;
                      setSelected((s) => {
                        const n = new Set(s);
                        if (on) n.add(r.index);
                        else n.delete(r.index);
                        return n;
                      });
                    }}
                  />
                </Table.Td>
                {r.getVisibleCells().map((cell) => (
                  <Table.Td key={cell.id}>
                    <Cell
                      api={api}
                      table={table}
                      column={cell.column.columnDef.meta as Column}
                      row={r.original}
                      onSaved={(updated) => setRows((all) => all.map((x, i) => (i === r.index ? updated : x)))}
                    />
                  </Table.Td>
                ))}
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </ScrollArea>
      {!loading && rows.length === 0 && !error && <Text c="dimmed">No rows.</Text>}
      <Group justify="space-between">
        <Text size="sm" c="dimmed" data-testid="row-count">
          {total === null ? `${rows.length} rows on this page` : `about ${total.toLocaleString()} row${total === 1 ? "" : "s"}`}
          {loading && " · loading…"}
        </Text>
        <Group gap="xs">
          <Select
            size="xs"
            aria-label="Rows per page"
            data={PAGE_SIZES}
            value={String(pageSize)}
            onChange={(v) => {
              setPageSize(Number(v ?? 50));
              setPage(1);
            }}
            w={80}
          />
          <Pagination size="sm" total={pages} value={page} onChange={setPage} siblings={1} boundaries={1} getControlProps={(c) => ({ "aria-label": `${c} page` })} />
        </Group>
      </Group>
      {inserting && <InsertRow api={api} table={table} onClose={() => setInserting(false)} onInserted={() => setReload((n) => n + 1)} />}
      <ConfirmDelete
        opened={deleting}
        onClose={() => setDeleting(false)}
        title={`Delete ${selected.size} row(s) from ${table.name}`}
        word="delete"
        what={`The ${selected.size} selected row(s) are deleted.`}
        onConfirm={deleteSelected}
      />
    </Stack>
  );
}

export default function TableEditor() {
  const api = useProject();
  const params = useParams();
  const navigate = useNavigate();
  const schemas = api.details.exposed_schemas;
  const schema = params.schema ?? schemas[0] ?? "public";
  const [tables, setTables] = useState<TableInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = useCallback(() => {
    api
      .admin<TableInfo[]>(`/admin/v1/tables?schema=${encodeURIComponent(schema)}`)
      .then(setTables)
      .catch((e) => setError(errorText(e)));
  }, [api.ref, schema]);
  useEffect(load, [load]);
  const table = tables?.find((t) => t.name === params.table);
  return (
    <Flex direction={{ base: "column", md: "row" }} gap="md" align={{ base: "stretch", md: "flex-start" }}>
      <Stack w={{ base: "100%", md: 200 }} gap={4} style={{ flexShrink: 0 }} component="nav" aria-label="Tables">
        <Select
          size="xs"
          label="Schema"
          data={Array.from(new Set([...schemas, schema]))}
          value={schema}
          onChange={(v) => v && navigate(`/projects/${api.ref}/tables/${v}/`)}
        />
        {error && <Text c="red" size="sm">{error}</Text>}
        {tables?.map((t) => (
          <NavLink component="button"
            key={t.name}
            label={t.name}
            active={t.name === params.table}
            onClick={() => navigate(`/projects/${api.ref}/tables/${t.schema}/${t.name}`)}
            description={t.row_estimate > 0 ? `~${t.row_estimate.toLocaleString()} rows` : undefined}
          />
        ))}
        {tables?.length === 0 && <Text size="sm" c="dimmed">No tables in {schema}. Create one in Schema or the SQL editor.</Text>}
      </Stack>
      <div style={{ flex: 1, minWidth: 0 }}>
        {table ? (
          <Grid key={`${table.schema}.${table.name}`} api={api} table={table} />
        ) : (
          <Text c="dimmed">{tables ? "Pick a table." : "Loading tables…"}</Text>
        )}
        {params.table && tables && !table && <Code>{params.table}</Code>}
      </div>
    </Flex>
  );
}
