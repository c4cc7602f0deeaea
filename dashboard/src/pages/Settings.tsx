// Project settings: name, exposed schemas, CORS origins, storage quota, keys (revealed on
// demand, rotated with a typed confirmation and shown once), legacy HS256
// secret (write-only) and deletion with a typed confirmation.
import { useState } from "react";
import { Alert, Button, Divider, Group, Modal, NumberInput, PasswordInput, Stack, Switch, TagsInput, Text, TextInput, Title } from "@mantine/core";
import { useNavigate } from "react-router";
import { errorText, request } from "../api/client";
import type { ProjectDetails, RotatedKeys } from "../api/types";
import { useProject } from "../project";
import { ConfirmDelete, Copyable, notifyOk } from "../components/common";

/** The new keys after a rotation, shown once. */
function RotatedKeysDialog({ keys, onClose }: { keys: RotatedKeys; onClose: () => void }) {
  return (
    <Modal opened onClose={onClose} title="New keys" size="lg" closeButtonProps={{ "aria-label": "Close" }}>
      <Stack>
        <Alert color="yellow">
          The old keys no longer work. Update your apps now{keys.legacy_jwt_secret ? "; the legacy secret is shown only this once" : ""}.
        </Alert>
        <Copyable label="New anon key" value={keys.anon_key} />
        <Copyable label="New service_role key" value={keys.service_role_key} />
        {keys.legacy_jwt_secret && <Copyable label="New legacy JWT secret" value={keys.legacy_jwt_secret} />}
        <Group justify="flex-end">
          <Button onClick={onClose}>Done</Button>
        </Group>
      </Stack>
    </Modal>
  );
}

const MIB = 1024 * 1024;

export default function Settings() {
  const api = useProject();
  const navigate = useNavigate();
  const [name, setName] = useState(api.details.name);
  const [schemas, setSchemas] = useState<string[]>(api.details.exposed_schemas);
  const [ownCors, setOwnCors] = useState(api.details.cors_origins != null);
  const [origins, setOrigins] = useState<string[]>(api.details.cors_origins ?? []);
  const [ownQuota, setOwnQuota] = useState(api.details.storage_max_bytes != null);
  const [quotaMib, setQuotaMib] = useState<string | number>(
    api.details.storage_max_bytes != null ? Math.round(api.details.storage_max_bytes / MIB) : 10240,
  );
  const [legacy, setLegacy] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [reveal, setReveal] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [rotating, setRotating] = useState(false);
  const [rotated, setRotated] = useState<RotatedKeys | null>(null);
  const path = `/platform/v1/projects/${encodeURIComponent(api.ref)}`;
  async function save(changes: Record<string, unknown>, message: string) {
    setBusy(true);
    setError(null);
    try {
      const d = await request<ProjectDetails>(path, { method: "PATCH", body: changes });
      setOrigins(d.cors_origins ?? []);
      api.setDetails(d);
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
      <Divider label="CORS" labelPosition="left" />
      <Switch
        label="Use this project's own allowed origins"
        description="Off: the server-wide list (FERROBASE_CORS_ORIGINS) applies."
        checked={ownCors}
        onChange={(e) => setOwnCors(e.currentTarget.checked)}
      />
      <TagsInput
        label="Allowed origins"
        description="Browser origins that may call this project's APIs: * (any), https://app.example.com, or https://*.example.com. Empty: none. Press Enter after each."
        value={origins}
        onChange={setOrigins}
        disabled={!ownCors}
        splitChars={[",", " "]}
      />
      <Group>
        <Button
          variant="default"
          loading={busy}
          onClick={() => save({ cors_origins: ownCors ? origins : null }, ownCors ? "CORS origins saved" : "CORS back to the server-wide origins")}
        >
          Save CORS origins
        </Button>
      </Group>
      <Divider label="Storage quota" labelPosition="left" />
      <Switch
        label="Use this project's own storage quota"
        description="Off: the server-wide FERROBASE_STORAGE_MAX_PROJECT_BYTES applies."
        checked={ownQuota}
        onChange={(e) => setOwnQuota(e.currentTarget.checked)}
      />
      <NumberInput
        label="Storage quota (MiB)"
        description="Bytes of objects the project may keep across its buckets; 0 = no limit. Uploads past it get 413 QuotaExceeded; deletes always work."
        min={0}
        allowDecimal={false}
        value={quotaMib}
        onChange={setQuotaMib}
        disabled={!ownQuota}
      />
      <Group>
        <Button
          variant="default"
          loading={busy}
          onClick={() =>
            save(
              { storage_max_bytes: ownQuota ? Math.max(0, Number(quotaMib) || 0) * MIB : null },
              ownQuota ? "Storage quota saved" : "Storage quota back to the server default",
            )
          }
        >
          Save storage quota
        </Button>
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
      <Group>
        <Button color="orange" variant="light" onClick={() => setRotating(true)}>Rotate keys</Button>
      </Group>
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
        opened={rotating}
        onClose={() => setRotating(false)}
        title={`Rotate the keys of ${api.ref}`}
        word={api.ref}
        action="Rotate keys"
        what="New anon and service_role keys (and a new legacy secret, if one is set) replace the current ones, which stop working at once, as do users' access tokens (their sessions refresh)."
        onConfirm={async () => {
          const keys = await request<RotatedKeys>(`${path}/keys/rotate`, { method: "POST" });
          api.setDetails({ ...api.details, anon_key: keys.anon_key, service_role_key: keys.service_role_key });
          setRotated(keys);
        }}
      />
      {rotated && <RotatedKeysDialog keys={rotated} onClose={() => setRotated(null)} />}
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
      <Text size="xs" c="dimmed">Key rotation and CORS changes apply on every server node at once.</Text>
    </Stack>
  );
}
