// Projects: list, create (the keys are shown once), open, delete with a typed confirmation.
import { useCallback, useEffect, useState } from "react";
import { Alert, Anchor, Badge, Button, Group, Modal, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { Link, useNavigate } from "react-router";
import { errorText, request } from "../api/client";
import type { Project, ProjectDetails } from "../api/types";
import { ConfirmDelete, Copyable, notifyOk } from "../components/common";

function CreateProject({ opened, onClose, onCreated }: { opened: boolean; onClose: () => void; onCreated: () => void }) {
  const [ref, setRef] = useState("");
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState<ProjectDetails | null>(null);
  const close = () => {
    setRef("");
    setName("");
    setError(null);
    setCreated(null);
    onClose();
  };
  async function submit(e: React.FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const p = await request<ProjectDetails>("/platform/v1/projects", {
        method: "POST",
        body: { ref, name: name || undefined },
      });
      setCreated(p);
      onCreated();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <Modal opened={opened} onClose={close} title={created ? `Project ${created.ref} created` : "New project"} size="lg">
      {created ? (
        <Stack>
          <Alert color="yellow" title="Copy these now">
            The keys and the database URL are shown here once; later you find them in the project's settings.
          </Alert>
          <Copyable label="URL" value={created.url} />
          <Copyable label="anon key" value={created.anon_key} />
          <Copyable label="service_role key" value={created.service_role_key} />
          <Copyable label="Database URL" value={created.db_url} />
          <Group justify="flex-end">
            <Button onClick={close}>Done</Button>
          </Group>
        </Stack>
      ) : (
        <form onSubmit={submit}>
          <Stack>
            {error && <Alert color="red" title="Could not create the project">{error}</Alert>}
            <TextInput
              label="Ref"
              description="3–40 lowercase letters, digits and -; the project's name in URLs"
              required
              pattern={"[a-z0-9][a-z0-9\\-]{1,38}[a-z0-9]"}
              value={ref}
              onChange={(e) => setRef(e.currentTarget.value.toLowerCase())}
              data-autofocus
            />
            <TextInput label="Display name" value={name} onChange={(e) => setName(e.currentTarget.value)} />
            <Group justify="flex-end">
              <Button variant="default" onClick={close}>Cancel</Button>
              <Button type="submit" loading={busy}>Create project</Button>
            </Group>
          </Stack>
        </form>
      )}
    </Modal>
  );
}

export function Projects() {
  const [projects, setProjects] = useState<Project[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<Project | null>(null);
  const navigate = useNavigate();
  const load = useCallback(() => {
    request<Project[]>("/platform/v1/projects")
      .then((p) => {
        setProjects(p);
        setError(null);
      })
      .catch((e) => setError(errorText(e)));
  }, []);
  useEffect(load, [load]);
  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2}>Projects</Title>
        <Button onClick={() => setCreating(true)}>New project</Button>
      </Group>
      {error && <Alert color="red">{error}</Alert>}
      <div className="grid-scroll">
        <Table highlightOnHover striped aria-label="Projects">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Ref</Table.Th>
              <Table.Th>Name</Table.Th>
              <Table.Th>Status</Table.Th>
              <Table.Th>Created</Table.Th>
              <Table.Th>URL</Table.Th>
              <Table.Th><span className="visually-hidden">Actions</span></Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {projects?.map((p) => (
              <Table.Tr key={p.ref}>
                <Table.Td>
                  <Anchor component={Link} to={`/projects/${p.ref}/tables`}>{p.ref}</Anchor>
                </Table.Td>
                <Table.Td>{p.name}</Table.Td>
                <Table.Td>
                  <Badge color={p.status === "ready" ? "teal" : "gray"} variant="light">{p.status}</Badge>
                </Table.Td>
                <Table.Td>{new Date(p.created_at).toLocaleString()}</Table.Td>
                <Table.Td><Text size="sm" className="mono">{p.url}</Text></Table.Td>
                <Table.Td>
                  <Group gap="xs" wrap="nowrap">
                    <Button size="xs" variant="default" onClick={() => navigate(`/projects/${p.ref}/settings`)}>Settings</Button>
                    <Button size="xs" variant="light" color="red" onClick={() => setDeleting(p)} aria-label={`Delete ${p.ref}`}>Delete</Button>
                  </Group>
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </div>
      {projects?.length === 0 && <Text c="dimmed">No projects yet.</Text>}
      <CreateProject opened={creating} onClose={() => setCreating(false)} onCreated={load} />
      {deleting && (
        <ConfirmDelete
          opened
          onClose={() => setDeleting(null)}
          title={`Delete project ${deleting.ref}`}
          word={deleting.ref}
          what={`The project's database, users, files and keys are deleted.`}
          onConfirm={async () => {
            await request(`/platform/v1/projects/${encodeURIComponent(deleting.ref)}`, { method: "DELETE" });
            notifyOk(`Project ${deleting.ref} deleted`);
            load();
          }}
        />
      )}
    </Stack>
  );
}
