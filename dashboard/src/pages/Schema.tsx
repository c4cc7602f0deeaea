// Schema management through /admin/v1: tables (create, rename, drop),
// columns (add, drop, default, not null), indexes, foreign keys, row level
// security and policies (with templates).
import { useCallback, useEffect, useState } from "react";
import {
  Alert,
  Badge,
  Button,
  Checkbox,
  Code,
  Flex,
  Group,
  Modal,
  MultiSelect,
  NavLink,
  ScrollArea,
  Select,
  Stack,
  Switch,
  Table,
  Tabs,
  Text,
  TextInput,
  Textarea,
  Title,
} from "@mantine/core";
import { useNavigate, useParams } from "react-router";
import { errorText } from "../api/client";
import type { ColumnDef, TableInfo } from "../api/types";
import { useProject } from "../project";
import { ConfirmDelete, notifyError, notifyOk } from "../components/common";

const TYPES = ["text", "bigint", "integer", "numeric", "boolean", "uuid", "timestamptz", "date", "jsonb", "text[]", "bytea"];

type Template = { label: string; command: string; roles: string[]; using?: string; with_check?: string };

/** Policy templates: a starting point the admin can edit before creating. */
export const POLICY_TEMPLATES: Record<string, (owner: string) => Template> = {
  "Public read": () => ({ label: "public read", command: "select", roles: ["anon", "authenticated"], using: "true" }),
  "Owner only": (owner) => ({ label: "owner only", command: "all", roles: ["authenticated"], using: `${owner} = auth.uid()`, with_check: `${owner} = auth.uid()` }),
  "Signed-in read": () => ({ label: "signed-in read", command: "select", roles: ["authenticated"], using: "true" }),
  "Owner insert": (owner) => ({ label: "owner insert", command: "insert", roles: ["authenticated"], with_check: `${owner} = auth.uid()` }),
};

function NewTable({ schema, onClose, onDone }: { schema: string; onClose: () => void; onDone: (name: string) => void }) {
  const api = useProject();
  const [name, setName] = useState("");
  const [columns, setColumns] = useState<ColumnDef[]>([{ name: "", type: "text", not_null: false, unique: false, primary_key: false }]);
  const [id, setId] = useState(true);
  const [timestamps, setTimestamps] = useState(true);
  const [rls, setRls] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const set = (i: number, patch: Partial<ColumnDef>) => setColumns((cs) => cs.map((c, j) => (i === j ? { ...c, ...patch } : c)));
  async function submit(e: React.FormEvent) {
    e.preventDefault();
    try {
      await api.admin("/admin/v1/tables", {
        method: "POST",
        body: { schema, name, id, timestamps, rls, columns: columns.filter((c) => c.name) },
      });
      notifyOk(`Table ${name} created`);
      onDone(name);
      onClose();
    } catch (err) {
      setError(errorText(err));
    }
  }
  return (
    <Modal opened onClose={onClose} title={`New table in ${schema}`} size="xl">
      <form onSubmit={submit}>
        <Stack>
          {error && <Alert color="red">{error}</Alert>}
          <TextInput label="Name" required value={name} onChange={(e) => setName(e.currentTarget.value)} data-autofocus />
          <Group>
            <Checkbox label="id column (bigint identity primary key)" checked={id} onChange={(e) => setId(e.currentTarget.checked)} />
            <Checkbox label="created_at / updated_at" checked={timestamps} onChange={(e) => setTimestamps(e.currentTarget.checked)} />
            <Checkbox label="Enable RLS" checked={rls} onChange={(e) => setRls(e.currentTarget.checked)} />
          </Group>
          {columns.map((c, i) => (
            <Group key={i} align="flex-end" gap="xs" wrap="wrap">
              <TextInput label={`Column ${i + 1} name`} value={c.name} onChange={(e) => set(i, { name: e.currentTarget.value })} w={160} />
              <Select label="Type" data={TYPES} searchable value={c.type} onChange={(v) => set(i, { type: v ?? "text" })} w={140} />
              <TextInput label="Default" value={c.default ?? ""} onChange={(e) => set(i, { default: e.currentTarget.value || null })} w={140} />
              <Checkbox label="not null" checked={!!c.not_null} onChange={(e) => set(i, { not_null: e.currentTarget.checked })} />
              <Checkbox label="unique" checked={!!c.unique} onChange={(e) => set(i, { unique: e.currentTarget.checked })} />
              <TextInput
                label="References (table.column)"
                value={c.references ? `${c.references.table}${c.references.column ? `.${c.references.column}` : ""}` : ""}
                onChange={(e) => {
                  const v = e.currentTarget.value;
                  const [table, column] = v.split(".");
                  set(i, { references: table ? { table, column: column || null, on_delete: "no_action", on_update: "no_action" } : null });
                }}
                w={180}
              />
            </Group>
          ))}
          <Group>
            <Button variant="default" size="xs" onClick={() => setColumns((cs) => [...cs, { name: "", type: "text", not_null: false, unique: false, primary_key: false }])}>
              Add column
            </Button>
          </Group>
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>Cancel</Button>
            <Button type="submit">Create table</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

function NewPolicy({ table, onClose, onDone }: { table: TableInfo; onClose: () => void; onDone: () => void }) {
  const api = useProject();
  const ownerColumn = table.columns.find((c) => /^(user_id|owner|owner_id)$/.test(c.name))?.name ?? "user_id";
  const [name, setName] = useState("");
  const [command, setCommand] = useState<string | null>("all");
  const [roles, setRoles] = useState<string[]>(["authenticated"]);
  const [using, setUsing] = useState("");
  const [check, setCheck] = useState("");
  const [error, setError] = useState<string | null>(null);
  const apply = (key: string) => {
    const t = POLICY_TEMPLATES[key](ownerColumn);
    // Policy names are identifiers: letters, digits and `_`.
    setName(`${table.name}_${t.label}`.replace(/[^A-Za-z0-9_]+/g, "_").slice(0, 63));
    setCommand(t.command);
    setRoles(t.roles);
    setUsing(t.using ?? "");
    setCheck(t.with_check ?? "");
  };
  async function submit(e: React.FormEvent) {
    e.preventDefault();
    try {
      await api.admin(`/admin/v1/tables/${encodeURIComponent(table.name)}/policies?schema=${encodeURIComponent(table.schema)}`, {
        method: "POST",
        body: { name, command, roles, using: using || null, with_check: check || null },
      });
      notifyOk(`Policy ${name} created`);
      onDone();
      onClose();
    } catch (err) {
      setError(errorText(err));
    }
  }
  return (
    <Modal opened onClose={onClose} title={`New policy on ${table.name}`} size="lg">
      <form onSubmit={submit}>
        <Stack>
          {error && <Alert color="red">{error}</Alert>}
          <Group gap="xs">
            <Text size="sm">Templates:</Text>
            {Object.keys(POLICY_TEMPLATES).map((k) => (
              <Button key={k} size="xs" variant="light" onClick={() => apply(k)}>{k}</Button>
            ))}
          </Group>
          <TextInput label="Name" required value={name} onChange={(e) => setName(e.currentTarget.value)} />
          <Select label="Command" data={["all", "select", "insert", "update", "delete"]} value={command} onChange={setCommand} />
          <MultiSelect label="Roles" data={["public", "anon", "authenticated", "service_role"]} value={roles} onChange={setRoles} />
          <Textarea label="USING (rows visible or affected)" classNames={{ input: "mono" }} value={using} onChange={(e) => setUsing(e.currentTarget.value)} autosize />
          <Textarea label="WITH CHECK (rows allowed to be written)" classNames={{ input: "mono" }} value={check} onChange={(e) => setCheck(e.currentTarget.value)} autosize />
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>Cancel</Button>
            <Button type="submit">Create policy</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

function TableDetails({ table, reload, onDropped }: { table: TableInfo; reload: () => void; onDropped: () => void }) {
  const api = useProject();
  const base = `/admin/v1/tables/${encodeURIComponent(table.name)}`;
  const q = `?schema=${encodeURIComponent(table.schema)}`;
  const [col, setCol] = useState({ name: "", type: "text" });
  const [idx, setIdx] = useState<string[]>([]);
  const [unique, setUnique] = useState(false);
  const [fk, setFk] = useState({ column: "", target: "" });
  const [policy, setPolicy] = useState(false);
  const [dropping, setDropping] = useState(false);
  const run = async (what: string, f: () => Promise<unknown>) => {
    try {
      await f();
      notifyOk(what);
      reload();
    } catch (e) {
      notifyError(e);
    }
  };
  const alter = (actions: unknown[]) => api.admin(base + q, { method: "PATCH", body: { actions } });
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2} size="h3">{table.schema}.{table.name}</Title>
        <Group gap="xs">
          <Switch
            label="Row level security"
            checked={table.rls_enabled}
            onChange={(e) => {
              const enabled = e.currentTarget.checked;
              void run(enabled ? "RLS enabled" : "RLS disabled", () => api.admin(`${base}/rls${q}`, { method: "PUT", body: { enabled } }));
            }}
          />
          <Button size="xs" color="red" variant="light" onClick={() => setDropping(true)}>Drop table</Button>
        </Group>
      </Group>
      {table.rls_enabled && table.policies.length === 0 && (
        <Alert color="yellow">RLS is on and there are no policies: only the service role can read or write this table.</Alert>
      )}
      {!table.rls_enabled && <Alert color="orange">RLS is off: anyone with the anon key can read and write every row.</Alert>}
      <Tabs defaultValue="columns">
        <Tabs.List>
          <Tabs.Tab value="columns">Columns</Tabs.Tab>
          <Tabs.Tab value="indexes">Indexes</Tabs.Tab>
          <Tabs.Tab value="fks">Foreign keys</Tabs.Tab>
          <Tabs.Tab value="policies">Policies</Tabs.Tab>
        </Tabs.List>
        <Tabs.Panel value="columns" pt="sm">
          <ScrollArea type="auto">
            <Table striped aria-label="Columns">
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Name</Table.Th>
                  <Table.Th>Type</Table.Th>
                  <Table.Th>Default</Table.Th>
                  <Table.Th>Nullable</Table.Th>
                  <Table.Th><span className="visually-hidden">Actions</span></Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {table.columns.map((c) => (
                  <Table.Tr key={c.name}>
                    <Table.Td>
                      {c.name} {table.primary_key.includes(c.name) && <Badge size="xs" variant="light">PK</Badge>}
                    </Table.Td>
                    <Table.Td className="mono">{c.type}</Table.Td>
                    <Table.Td className="mono">{c.default ?? (c.identity ? "identity" : "")}</Table.Td>
                    <Table.Td>
                      <Checkbox
                        aria-label={`${c.name} nullable`}
                        checked={c.nullable}
                        onChange={(e) => {
                          const nullable = e.currentTarget.checked;
                          void run("Column changed", () => alter([{ op: nullable ? "drop_not_null" : "set_not_null", name: c.name }]));
                        }}
                      />
                    </Table.Td>
                    <Table.Td>
                      <Button size="xs" variant="subtle" color="red" aria-label={`Drop column ${c.name}`} onClick={() => window.confirm(`Drop column ${c.name}?`) && run("Column dropped", () => alter([{ op: "drop_column", name: c.name }]))}>
                        Drop
                      </Button>
                    </Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </ScrollArea>
          <Group align="flex-end" gap="xs" mt="sm">
            <TextInput label="New column" value={col.name} onChange={(e) => setCol({ ...col, name: e.currentTarget.value })} />
            <Select label="Type" data={TYPES} searchable value={col.type} onChange={(v) => setCol({ ...col, type: v ?? "text" })} w={140} />
            <Button
              disabled={!col.name}
              onClick={() => run(`Column ${col.name} added`, () => alter([{ op: "add_column", column: { name: col.name, type: col.type } }])).then(() => setCol({ name: "", type: "text" }))}
            >
              Add column
            </Button>
          </Group>
        </Tabs.Panel>
        <Tabs.Panel value="indexes" pt="sm">
          <Stack gap="xs">
            {table.indexes.map((i) => (
              <Group key={i.name} justify="space-between">
                <Code>{i.definition}</Code>
                {!i.primary && (
                  <Button size="xs" variant="subtle" color="red" onClick={() => run("Index dropped", () => api.admin(`/admin/v1/indexes/${encodeURIComponent(i.name)}${q}`, { method: "DELETE" }))}>
                    Drop
                  </Button>
                )}
              </Group>
            ))}
            <Group align="flex-end" gap="xs">
              <MultiSelect label="Index columns" data={table.columns.map((c) => c.name)} value={idx} onChange={setIdx} w={280} />
              <Checkbox label="unique" checked={unique} onChange={(e) => setUnique(e.currentTarget.checked)} />
              <Button disabled={!idx.length} onClick={() => run("Index created", () => api.admin(`${base}/indexes${q}`, { method: "POST", body: { columns: idx, unique } })).then(() => setIdx([]))}>
                Create index
              </Button>
            </Group>
          </Stack>
        </Tabs.Panel>
        <Tabs.Panel value="fks" pt="sm">
          <Stack gap="xs">
            {table.foreign_keys.map((f) => (
              <Group key={f.name} justify="space-between">
                <Text size="sm"><Code>{f.columns.join(", ")}</Code> → <Code>{f.target_schema}.{f.target_table}({f.target_columns.join(", ")})</Code> on delete {f.on_delete}</Text>
                <Button size="xs" variant="subtle" color="red" onClick={() => run("Foreign key dropped", () => alter([{ op: "drop_constraint", name: f.name }]))}>Drop</Button>
              </Group>
            ))}
            {table.foreign_keys.length === 0 && <Text size="sm" c="dimmed">No foreign keys.</Text>}
            <Group align="flex-end" gap="xs">
              <Select label="Column" data={table.columns.map((c) => c.name)} value={fk.column} onChange={(v) => setFk({ ...fk, column: v ?? "" })} w={160} />
              <TextInput label="References (table.column)" value={fk.target} onChange={(e) => setFk({ ...fk, target: e.currentTarget.value })} w={220} />
              <Button
                disabled={!fk.column || !fk.target}
                onClick={() => {
                  const [t, c] = fk.target.split(".");
                  return run("Foreign key added", () => alter([{ op: "add_foreign_key", columns: [fk.column], references_table: t, references_columns: c ? [c] : [] }]));
                }}
              >
                Add foreign key
              </Button>
            </Group>
          </Stack>
        </Tabs.Panel>
        <Tabs.Panel value="policies" pt="sm">
          <Stack gap="xs">
            {table.policies.map((p) => (
              <Group key={p.name} justify="space-between" align="flex-start">
                <Stack gap={0}>
                  <Text size="sm" fw={600}>{p.name} <Badge size="xs" variant="light">{p.command}</Badge> <Text span size="xs" c="dimmed">to {p.roles.join(", ")}</Text></Text>
                  {p.using && <Text size="xs" className="mono">using ({p.using})</Text>}
                  {p.with_check && <Text size="xs" className="mono">with check ({p.with_check})</Text>}
                </Stack>
                <Button size="xs" variant="subtle" color="red" onClick={() => run("Policy dropped", () => api.admin(`${base}/policies/${encodeURIComponent(p.name)}${q}`, { method: "DELETE" }))}>
                  Drop
                </Button>
              </Group>
            ))}
            {table.policies.length === 0 && <Text size="sm" c="dimmed">No policies.</Text>}
            <Group>
              <Button onClick={() => setPolicy(true)}>New policy</Button>
            </Group>
          </Stack>
        </Tabs.Panel>
      </Tabs>
      {policy && <NewPolicy table={table} onClose={() => setPolicy(false)} onDone={reload} />}
      <ConfirmDelete
        opened={dropping}
        onClose={() => setDropping(false)}
        title={`Drop table ${table.name}`}
        word={table.name}
        what="The table and all its rows are dropped."
        onConfirm={async () => {
          await api.admin(base + q, { method: "DELETE" });
          notifyOk(`Table ${table.name} dropped`);
          onDropped();
        }}
      />
    </Stack>
  );
}

export default function SchemaPage() {
  const api = useProject();
  const params = useParams();
  const navigate = useNavigate();
  const schema = params.schema ?? api.details.exposed_schemas[0] ?? "public";
  const [tables, setTables] = useState<TableInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
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
      <Stack w={{ base: "100%", md: 200 }} gap={4} style={{ flexShrink: 0 }} component="nav" aria-label="Schema tables">
        <Button size="xs" onClick={() => setCreating(true)}>New table</Button>
        {error && <Text c="red" size="sm">{error}</Text>}
        {tables?.map((t) => (
          <NavLink component="button" key={t.name} label={t.name} active={t.name === params.table} onClick={() => navigate(`/projects/${api.ref}/schema/${t.schema}/${t.name}`)} />
        ))}
      </Stack>
      <div style={{ flex: 1, minWidth: 0 }}>
        {table ? (
          <TableDetails table={table} reload={load} onDropped={() => { load(); navigate(`/projects/${api.ref}/schema`); }} />
        ) : (
          <Text c="dimmed">Pick a table or create one.</Text>
        )}
      </div>
      {creating && <NewTable schema={schema} onClose={() => setCreating(false)} onDone={(name) => { load(); navigate(`/projects/${api.ref}/schema/${schema}/${name}`); }} />}
    </Flex>
  );
}
