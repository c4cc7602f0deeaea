// Small pieces shared by the pages: a copyable secret, a typed-confirmation
// dialog (deletes, key rotation), and error notifications.
import { useState } from "react";
import { Button, Code, CopyButton, Group, Modal, Stack, Text, TextInput } from "@mantine/core";
import { notifications } from "@mantine/notifications";
import { errorText } from "../api/client";

export function notifyError(e: unknown, title = "Request failed") {
  notifications.show({ color: "red", title, message: errorText(e), closeButtonProps: { "aria-label": "Close" } });
}

export function notifyOk(message: string) {
  notifications.show({ color: "teal", message, closeButtonProps: { "aria-label": "Close" } });
}

/** A value with a copy button (keys shown once, signed URLs). */
export function Copyable({ label, value }: { label: string; value: string }) {
  return (
    <Stack gap={4}>
      <Text size="sm" fw={500}>{label}</Text>
      <Group wrap="nowrap" gap="xs" align="flex-start">
        <Code block style={{ flex: 1, wordBreak: "break-all", whiteSpace: "pre-wrap" }} data-testid={`secret-${label}`}>{value}</Code>
        <CopyButton value={value}>
          {({ copied, copy }) => (
            <Button size="xs" variant="default" onClick={copy} aria-label={`Copy ${label}`} w={72}>
              {copied ? "Copied" : "Copy"}
            </Button>
          )}
        </CopyButton>
      </Group>
    </Stack>
  );
}

/** Asks the user to type `word` before `onConfirm` runs (its button says `action`, default "Delete"). */
export function ConfirmDelete(props: {
  opened: boolean;
  onClose: () => void;
  title: string;
  word: string;
  what: string;
  action?: string;
  onConfirm: () => Promise<void>;
}) {
  const [typed, setTyped] = useState("");
  const [busy, setBusy] = useState(false);
  const close = () => {
    setTyped("");
    props.onClose();
  };
  return (
    <Modal opened={props.opened} onClose={close} title={props.title} closeButtonProps={{ "aria-label": "Close" }}>
      <Stack>
        <Text size="sm">{props.what} This cannot be undone.</Text>
        <TextInput
          label={<>Type <Code>{props.word}</Code> to confirm</>}
          value={typed}
          onChange={(e) => setTyped(e.currentTarget.value)}
          data-autofocus
        />
        <Group justify="flex-end">
          <Button variant="default" onClick={close}>Cancel</Button>
          <Button
            color="red"
            disabled={typed !== props.word}
            loading={busy}
            onClick={async () => {
              setBusy(true);
              try {
                await props.onConfirm();
                close();
              } catch (e) {
                notifyError(e);
              } finally {
                setBusy(false);
              }
            }}
          >
            {props.action ?? "Delete"}
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}
