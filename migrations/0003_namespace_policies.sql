-- Each namespace's effective TargetPolicy (sundial.core.policy), written only by the operator,
-- read by every worker before it runs anything: a message written straight into Redis cannot
-- widen what its namespace may run. A namespace without a row gets the deployment's default.
CREATE TABLE namespace_policies (
    namespace  text        PRIMARY KEY,
    policy     jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
