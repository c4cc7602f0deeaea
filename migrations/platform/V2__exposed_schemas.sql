-- Schemas the data API serves for a project (first = default), chosen per
-- request with Accept-Profile / Content-Profile.
alter table projects add column exposed_schemas text[] not null default '{public}';
