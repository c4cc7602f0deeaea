// Project settings: name, exposed schemas, keys (revealed on demand),
// legacy HS256 secret (write-only) and deletion with a typed confirmation.
import { useState } from "react";
import { Alert, Button, Divider, Group, PasswordInput, Stack, TagsInput, TextInput, Title } from "@mantine/core";
import { useNavigate } from "react-router";
import { errorText, request } from "../api/client";
import type { ProjectDetails } from "../api/types";
import { useProject } from "../project";
import { ConfirmDelete, Copyable, notifyOk } from "../components/common";

export default function Settings() {
  const api = useProject();
  const navigate = useNavigate();
  const [name, setName] = useState(api.details.name);
  const [schemas, setSchemas] = useState<string[]>(api.details.exposed_schemas);
  const [legacy, setLegacy] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [reveal, setReveal] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const path = `/platform/v1/projects/${encodeURIComponent(api.ref)}`;
  async function save(changes: Record<string, unknown>, message: string) {
    setBusy(true);
    setError(null);
    try {
      await request<ProjectDetails>(path, { method: "PATCH", body: changes });
      notifyOk(message);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }
  return (
    <Stack maw={760}>
      <Title order={2} size="h3">Settings of {api.ref}</Title>
      {error && <Alert color="red" title="Could not save">{error}</Alert>}
      <TextInput label="Display name" value={name} onChange={(e) => setName(e.currentTarget.value)} />
      <TagsInput
        label="Exposed schemas"
        description="Schemas served by the data API; the first is the default. Press Enter after each."
        value={schemas}
        onChange={setSchemas}
      />
      <Group>
        <Button loading={busy} onClick={() => save({ name, exposed_schemas: schemas }, "Settings saved")}>Save</Button>
      </Group>
      <Divider label="API" labelPosition="left" />
      <Copyable label="Project URL" value={api.details.url} />
      <Copyable label="anon key" value={api.details.anon_key} />
      {reveal ? (
        <>
          <Copyable label="service_role key" value={api.details.service_role_key} />
          <Copyable label="Database URL" value={api.details.db_url} />
        </>
      ) : (
        <Group>
          <Button variant="default" onClick={() => setReveal(true)}>Reveal service_role key and database URL</Button>
        </Group>
      )}
      <Divider label="Legacy JWT secret" labelPosition="left" />
      <PasswordInput
        label="Legacy HS256 secret"
        description="At least 32 characters; tokens signed with it are accepted too. Write-only: leave empty and save to remove it."
        value={legacy}
        onChange={(e) => setLegacy(e.currentTarget.value)}
        autoComplete="off"
      />
      <Group>
        <Button variant="default" loading={busy} onClick={() => save({ legacy_jwt_secret: legacy }, legacy ? "Legacy secret set" : "Legacy secret removed")}>
          {legacy ? "Set legacy secret" : "Remove legacy secret"}
        </Button>
      </Group>
      <Divider label="Danger zone" labelPosition="left" color="red" />
      <Group>
        <Button color="red" variant="light" onClick={() => setDeleting(true)}>Delete project</Button>
      </Group>
      <ConfirmDelete
        opened={deleting}
        onClose={() => setDeleting(false)}
        title={`Delete project ${api.ref}`}
        word={api.ref}
        what="The project's database, users, files and keys are deleted."
        onConfirm={async () => {
          await request(path, { method: "DELETE" });
          notifyOk(`Project ${api.ref} deleted`);
          navigate("/");
        }}
      />
    </Stack>
  );
}
