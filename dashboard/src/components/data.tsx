// Pieces most pages repeat: loading a listing (with its error), a plain
// table from column definitions, and a modal form that shows the server's
// error and closes on success. The big grids (table editor, SQL results) use
// TanStack Table instead; these are for the small admin listings.
import { useCallback, useEffect, useRef, useState, type FormEvent, type ReactNode } from "react";
import { Alert, Button, Group, Modal, ScrollArea, Stack, Table, Text } from "@mantine/core";
import { errorText } from "../api/client";

/** Loads `fetch()` on mount and whenever `deps` change; `reload` fetches again. */
export function useLoad<T>(fetch: () => Promise<T>, initial: T, deps: unknown[]) {
  const [data, setData] = useState<T>(initial);
  const [error, setError] = useState<string | null>(null);
  const live = useRef(true);
  useEffect(() => {
    live.current = true;
    return () => {
      live.current = false;
    };
  }, []);
  const reload = useCallback(() => {
    fetch()
      .then((d) => {
        if (!live.current) return;
        setData(d);
        setError(null);
      })
      .catch((e) => live.current && setError(errorText(e)));
  }, deps);
  useEffect(reload, [reload]);
  return { data, error, reload, setData };
}

/** One column of a [`DataTable`]. */
export interface Column<T> {
  /** Header text (also the key); `hidden` makes it visually hidden (an actions column). */
  header: string;
  hidden?: boolean;
  cell: (row: T) => ReactNode;
}

/** A striped table in a horizontal scroll area, with a text when empty. */
export function DataTable<T>(props: {
  label: string;
  columns: Column<T>[];
  rows: T[];
  rowKey: (row: T) => string | number;
  empty?: ReactNode;
  error?: string | null;
}) {
  return (
    <>
      {props.error && <Alert color="red">{props.error}</Alert>}
      <ScrollArea type="auto">
        <Table striped aria-label={props.label}>
          <Table.Thead>
            <Table.Tr>
              {props.columns.map((c) => (
                <Table.Th key={c.header}>{c.hidden ? <span className="visually-hidden">{c.header}</span> : c.header}</Table.Th>
              ))}
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {props.rows.map((r) => (
              <Table.Tr key={props.rowKey(r)}>
                {props.columns.map((c) => (
                  <Table.Td key={c.header}>{c.cell(r)}</Table.Td>
                ))}
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </ScrollArea>
      {props.rows.length === 0 && !props.error && props.empty && (
        <Text c="dimmed" size="sm">{props.empty}</Text>
      )}
    </>
  );
}

/** A form in a modal: runs `onSubmit`, shows its error, closes when it succeeds. */
export function FormModal(props: {
  title: string;
  submitLabel: string;
  onClose: () => void;
  onSubmit: () => Promise<void>;
  children: ReactNode;
}) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    try {
      await props.onSubmit();
      props.onClose();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <Modal opened onClose={props.onClose} title={props.title} closeButtonProps={{ "aria-label": "Close" }}>
      <form onSubmit={submit}>
        <Stack>
          {error && <Alert color="red">{error}</Alert>}
          {props.children}
          <Group justify="flex-end">
            <Button variant="default" onClick={props.onClose}>Cancel</Button>
            <Button type="submit" loading={busy}>{props.submitLabel}</Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

/** `t` as local date and time ("" for none). */
export function when(t: string | null | undefined): string {
  return t ? new Date(t).toLocaleString() : "";
}
