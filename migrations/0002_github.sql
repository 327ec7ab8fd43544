-- GitHub App installations and the repositories each one covers, from `installation` and
-- `installation_repositories` webhooks, so a task that names `owner/name` finds the
-- installation that can mint its token without asking GitHub.
CREATE TABLE github_installations (
    id          bigint PRIMARY KEY,
    account     text NOT NULL,
    suspended   boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE github_repositories (
    -- `owner/name`, lower-cased: GitHub names are case-insensitive.
    full_name       text PRIMARY KEY,
    installation_id bigint NOT NULL REFERENCES github_installations (id) ON DELETE CASCADE,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX github_repositories_installation ON github_repositories (installation_id);

-- Webhook deliveries already handled, by the forge's delivery id, so a redelivery answers
-- with what the first one did instead of acting twice.
CREATE TABLE webhook_deliveries (
    source       text NOT NULL,
    delivery_id  text NOT NULL,
    task_id      uuid REFERENCES tasks (id) ON DELETE SET NULL,
    outcome      text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, delivery_id)
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
