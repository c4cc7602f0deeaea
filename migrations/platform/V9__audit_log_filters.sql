-- Audit log listing (GET /platform/v1/logs/audit, the dashboard's Logs page):
-- filters by project (target = ref, or ref/… for things inside a project),
-- action prefix (e.g. "project.") and actor, newest first by id.
create index audit_log_target_idx on audit_log (target text_pattern_ops, id);
create index audit_log_action_idx on audit_log (action text_pattern_ops, id);
create index audit_log_actor_idx on audit_log (actor, id);
