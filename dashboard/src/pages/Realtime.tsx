// Realtime (`/admin/v1/realtime/…`, admin token): channel definitions
// (create, edit public/enabled/retention, delete), the tables whose changes
// are captured as `db:{schema}:{table}` events, and a test publish.
import { useCallback, useEffect, useState } from "react";
import {
  Alert,
  Badge,
  Button,
  Checkbox,
  Code,
  Group,
  Modal,
  NumberInput,
  ScrollArea,
  Select,
  Stack,
  Switch,
  Table,
  Text,
  TextInput,
  Textarea,
  Title,
} from "@mantine/core";
import { errorText } from "../api/client";
import type { ChangeTable, ChannelDef, TableInfo } from "../api/types";
import { useProject } from "../project";
import { ConfirmDelete, notifyError, notifyOk } from "../components/common";

function ChannelForm({ initial, onClose, onDone }: { initial?: ChannelDef; onClose: () => void; onDone: () => void }) {
  const api = useProject();
  const [pattern, setPattern] = useState(initial?.pattern ?? "");
  const [description, setDescription] = useState(initial?.description ?? "");
  const [isPublic, setPublic] = useState(initial?.public ?? false);
  const [enabled, setEnabled] = useState(initial?.enabled ?? true);
  const [retention, setRetention] = useState<number | string>(initial?.retention_hours ?? 24);
  const [error, setError] = useState<string | null>(null);
  async function submit(e: React.FormEvent) {
    e.preventDefault();
    try {
      const body = { pattern, description: description || null, public: isPublic, enabled, retention_hours: Number(retention) };
      if (initial) await api.admin(`/admin/v1/realtime/channels/${initial.id}`, { method: "PATCH", body });
      else await api.admin("/admin/v1/realtime/channels", { method: "POST", body });
      notifyOk(initial ? "Channel saved" : `Channel ${pattern} created`);
      onDone();
      onClose();
    } catch (err) {
      setError(errorText(err));
    }
  }
  return (
    <Modal opened onClose={onClose} title={initial ? "Edit channel" : "New channel"}>
      <form onSubmit={submit}>
        <Stack>
          {error && <Alert color="red">{error}</Alert>}
          <TextInput label="Pattern" description="LIKE pattern of channel names, e.g. room:%" required value={pattern} onChange={(e) => setPattern(e.currentTarget.value)} data-autofocus />
          <TextInput label="Description" value={description} onChange={(e) => setDescription(e.currentTarget.value)} />
          <Checkbox label="Public (any valid key; private channels are decided by RLS on realtime.messages)" checked={isPublic} onChange={(e) => setPublic(e.currentTarget.checked)} />
          <Switch label="Enabled" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} />
          <NumberInput label="History retention (hours)" min={0} value={retention} onChange={setRetention} />
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>Cancel</Button>
            <Button type="submit">{initial ? "Save channel" : "Create channel"}</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

function Channels() {
  const api = useProject();
  const [channels, setChannels] = useState<ChannelDef[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [editing, setEditing] = useState<ChannelDef | "new" | null>(null);
  const [deleting, setDeleting] = useState<ChannelDef | null>(null);
  const load = useCallback(() => {
    api
      .admin<ChannelDef[]>("/admin/v1/realtime/channels")
      .then((c) => {
        setChannels(c);
        setError(null);
      })
      .catch((e) => setError(errorText(e)));
  }, [api.ref]);
  useEffect(load, [load]);
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2} size="h3">Channels</Title>
        <Button size="xs" onClick={() => setEditing("new")}>New channel</Button>
      </Group>
      {error && <Alert color="red">{error}</Alert>}
      <ScrollArea type="auto">
        <Table striped aria-label="Channels">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Pattern</Table.Th>
              <Table.Th>Access</Table.Th>
              <Table.Th>State</Table.Th>
              <Table.Th>Retention</Table.Th>
              <Table.Th>Description</Table.Th>
              <Table.Th><span className="visually-hidden">Actions</span></Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {channels.map((c) => (
              <Table.Tr key={c.id}>
                <Table.Td><Code>{c.pattern}</Code></Table.Td>
                <Table.Td><Badge variant="light" color={c.public ? "orange" : "teal"}>{c.public ? "public" : "private"}</Badge></Table.Td>
                <Table.Td><Badge variant="light" color={c.enabled ? "teal" : "gray"}>{c.enabled ? "enabled" : "disabled"}</Badge></Table.Td>
                <Table.Td>{c.retention_hours} h</Table.Td>
                <Table.Td>{c.description}</Table.Td>
                <Table.Td>
                  <Group gap={4} wrap="nowrap">
                    <Button size="xs" variant="subtle" aria-label={`Edit channel ${c.pattern}`} onClick={() => setEditing(c)}>Edit</Button>
                    <Button size="xs" variant="subtle" color="red" aria-label={`Delete channel ${c.pattern}`} onClick={() => setDeleting(c)}>Delete</Button>
                  </Group>
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </ScrollArea>
      {channels.length === 0 && !error && <Text c="dimmed" size="sm">No channel definitions: every channel follows the defaults.</Text>}
      {editing && <ChannelForm initial={editing === "new" ? undefined : editing} onClose={() => setEditing(null)} onDone={load} />}
      {deleting && (
        <ConfirmDelete
          opened
          onClose={() => setDeleting(null)}
          title="Delete channel"
          word={deleting.pattern}
          what={`The definition of ${deleting.pattern} is deleted.`}
          onConfirm={async () => {
            await api.admin(`/admin/v1/realtime/channels/${deleting.id}`, { method: "DELETE" });
            notifyOk("Channel deleted");
            load();
          }}
        />
      )}
    </Stack>
  );
}

function Changes() {
  const api = useProject();
  const [changes, setChanges] = useState<ChangeTable[]>([]);
  const [tables, setTables] = useState<TableInfo[]>([]);
  const [pick, setPick] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = useCallback(() => {
    api
      .admin<ChangeTable[]>("/admin/v1/realtime/changes")
      .then((c) => {
        setChanges(c);
        setError(null);
      })
      .catch((e) => setError(errorText(e)));
  }, [api.ref]);
  useEffect(load, [load]);
  useEffect(() => {
    api
      .admin<TableInfo[]>("/admin/v1/tables?schema=public")
      .then(setTables)
      .catch(() => setTables([]));
  }, [api.ref]);
  const put = async (schema: string, table: string, ops: { insert: boolean; update: boolean; delete: boolean }) => {
    try {
      await api.admin(`/admin/v1/realtime/changes/${encodeURIComponent(schema)}/${encodeURIComponent(table)}`, { method: "PUT", body: ops });
      load();
    } catch (e) {
      notifyError(e);
    }
  };
  const captured = new Set(changes.map((c) => `${c.schema}.${c.table}`));
  const choices = tables.filter((t) => !captured.has(`${t.schema}.${t.name}`)).map((t) => `${t.schema}.${t.name}`);
  return (
    <Stack>
      <Title order={2} size="h3">Change capture</Title>
      <Text size="sm" c="dimmed">Captured tables publish their row changes as events on <Code>db:schema:table</Code> (subscribers need read access to the row).</Text>
      {error && <Alert color="red">{error}</Alert>}
      <Group align="flex-end">
        <Select label="Table" placeholder="public table" data={choices} value={pick} onChange={setPick} searchable />
        <Button
          disabled={!pick}
          onClick={async () => {
            if (!pick) return;
            const [schema, ...rest] = pick.split(".");
            await put(schema, rest.join("."), { insert: true, update: true, delete: true });
            notifyOk(`Capturing ${pick}`);
            setPick(null);
          }}
        >
          Capture changes
        </Button>
      </Group>
      <Table aria-label="Captured tables">
        <Table.Thead>
          <Table.Tr>
            <Table.Th>Table</Table.Th>
            <Table.Th>Insert</Table.Th>
            <Table.Th>Update</Table.Th>
            <Table.Th>Delete</Table.Th>
            <Table.Th><span className="visually-hidden">Actions</span></Table.Th>
          </Table.Tr>
        </Table.Thead>
        <Table.Tbody>
          {changes.map((c) => {
            const name = `${c.schema}.${c.table}`;
            const ops = { insert: c.insert, update: c.update, delete: c.delete };
            return (
              <Table.Tr key={name}>
                <Table.Td><Code>{name}</Code></Table.Td>
                {(["insert", "update", "delete"] as const).map((op) => (
                  <Table.Td key={op}>
                    <Checkbox aria-label={`Capture ${op} on ${name}`} checked={c[op]} onChange={(e) => put(c.schema, c.table, { ...ops, [op]: e.currentTarget.checked })} />
                  </Table.Td>
                ))}
                <Table.Td>
                  <Button
                    size="xs"
                    variant="subtle"
                    color="red"
                    aria-label={`Stop capturing ${name}`}
                    onClick={async () => {
                      try {
                        await api.admin(`/admin/v1/realtime/changes/${encodeURIComponent(c.schema)}/${encodeURIComponent(c.table)}`, { method: "DELETE" });
                        load();
                      } catch (e) {
                        notifyError(e);
                      }
                    }}
                  >
                    Stop
                  </Button>
                </Table.Td>
              </Table.Tr>
            );
          })}
        </Table.Tbody>
      </Table>
      {changes.length === 0 && !error && <Text c="dimmed" size="sm">No table is captured.</Text>}
    </Stack>
  );
}

function Publish() {
  const api = useProject();
  const [channel, setChannel] = useState("room:lobby");
  const [event, setEvent] = useState("message");
  const [payload, setPayload] = useState('{"text": "hello"}');
  return (
    <Stack>
      <Title order={2} size="h3">Send a test message</Title>
      <Group align="flex-end" grow>
        <TextInput label="Channel" value={channel} onChange={(e) => setChannel(e.currentTarget.value)} />
        <TextInput label="Event" value={event} onChange={(e) => setEvent(e.currentTarget.value)} />
      </Group>
      <Textarea label="Payload (JSON)" autosize minRows={2} value={payload} onChange={(e) => setPayload(e.currentTarget.value)} />
      <Group>
        <Button
          variant="light"
          onClick={async () => {
            try {
              await api.service("/realtime/v1/messages", { method: "POST", body: { channel, event, payload: JSON.parse(payload) } });
              notifyOk(`Published to ${channel}`);
            } catch (e) {
              notifyError(e);
            }
          }}
        >
          Publish (service role)
        </Button>
      </Group>
    </Stack>
  );
}

export default function RealtimePage() {
  return (
    <Stack gap="xl">
      <Channels />
      <Changes />
      <Publish />
    </Stack>
  );
}
