//! The tenant's share of the broker (a `tgsearch`-tagged vhost, a tag-less user, its one
//! permission) as the [`TenantBroker`] port: observed before it is written, never adopted when
//! it is not provably ours.

use super::{ManagementClient, Permission, RabbitMqError, User, missing_built_in_exchanges, port};
use crate::credentials::Password;
use crate::ports::{BrokerLimits, Converged, Foreign, PortError, Removed, TenantBroker, Transient};
use crate::tenant::TenantId;

/// What a tenant's vhost is described and tagged with, so operators can tell tenant vhosts apart,
/// and how the provisioner recognises the vhosts it created.
pub const TENANT_VHOST_TAG: &str = "tgsearch";

impl super::Vhost {
    pub fn is_tenant_vhost(&self) -> bool {
        self.tags.iter().any(|t| t == TENANT_VHOST_TAG)
    }
}

fn foreign(kind: &'static str, name: &str, reason: impl Into<String>) -> PortError {
    Foreign {
        kind,
        name: name.to_owned(),
        reason: reason.into(),
    }
    .into()
}

/// The rule that proves a tag-less RabbitMQ user named `<sub>` was written by the provisioner
/// (tenant users carry no tags, so no tag can): its password is the one stored in the tenant's
/// secret, or it holds a permission on the tenant's `tgsearch`-tagged vhost. `None` when the
/// user is ours, else why not.
pub fn user_not_ours(
    user: &User,
    stored: Option<&Password>,
    own_vhost_tagged: bool,
    permissions: &[Permission],
) -> Option<String> {
    if !user.tags.is_empty() {
        return Some(format!(
            "it has tags ({}); tenant users never do",
            user.tags.join(",")
        ));
    }
    if stored.is_some_and(|p| user.has_password(p)) {
        return None;
    }
    let on_own_vhost = permissions.iter().any(|p| p.vhost == user.name);
    if own_vhost_tagged && on_own_vhost {
        return None;
    }
    Some(
        "its password is not the tenant's stored one and it has no permission on the tenant's tagged vhost"
            .into(),
    )
}

impl ManagementClient {
    /// The user, its permissions and whether the same-named vhost is a tenant vhost: what the
    /// ownership rule needs.
    async fn observe_user(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<(User, Vec<Permission>, bool)>, RabbitMqError> {
        let Some(user) = self.get_user(tenant.rabbitmq_user()).await? else {
            return Ok(None);
        };
        let (permissions, vhost) = tokio::join!(
            self.user_permissions(tenant.rabbitmq_user()),
            self.get_vhost(tenant.vhost())
        );
        let tagged = vhost?.is_some_and(|v| v.is_tenant_vhost());
        Ok(Some((user, permissions?, tagged)))
    }
}

/// How long a vhost found without its built-in exchanges is watched before it counts as cut
/// short: another invocation may be creating it right now (RabbitMQ declares the exchanges one
/// by one after the vhost itself), which takes milliseconds.
const CUT_SHORT_RECHECKS: [std::time::Duration; 2] = [
    std::time::Duration::from_millis(300),
    std::time::Duration::from_millis(700),
];

impl ManagementClient {
    /// Creates the tenant's vhost in a task of its own, so that a caller that gives up (the
    /// signup's synchronous window, a deadline) does not close the connection while RabbitMQ is
    /// still declaring the vhost's exchanges and starting it on every node: the management API
    /// stops its work half-way when the client goes away, and leaves the vhost cut short.
    async fn create_vhost(&self, tenant: &TenantId) -> Result<(), PortError> {
        let client = self.clone();
        let name = tenant.vhost().to_owned();
        tokio::spawn(async move {
            client
                .put_vhost(&name, TENANT_VHOST_TAG, &[TENANT_VHOST_TAG])
                .await
        })
        .await
        .map_err(|e| PortError::from(format!("creating the vhost stopped: {e}")))?
        .map_err(port)
    }

    /// The built-in exchanges `tenant`'s vhost lacks.
    async fn missing_exchanges(&self, tenant: &TenantId) -> Result<Vec<&'static str>, PortError> {
        match self.vhost_exchanges(tenant.vhost()).await.map_err(port)? {
            Some(exchanges) => Ok(missing_built_in_exchanges(&exchanges)),
            None => Err(Transient::wrap(
                "the vhost vanished while being checked; retry",
                None,
            )),
        }
    }

    /// An existing tenant vhost is whole: one whose creation was cut short (built-in exchanges
    /// missing, still so after [`CUT_SHORT_RECHECKS`]) is deleted and created again while it
    /// holds no queue, so nothing is lost; with queues, it is left for a person.
    async fn ensure_vhost_whole(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        let mut missing = self.missing_exchanges(tenant).await?;
        for pause in CUT_SHORT_RECHECKS {
            if missing.is_empty() {
                return Ok(Converged::Unchanged);
            }
            tokio::time::sleep(pause).await;
            missing = self.missing_exchanges(tenant).await?;
        }
        if missing.is_empty() {
            return Ok(Converged::Unchanged);
        }
        let missing = missing.join(", ");
        let queues = self.vhost_queue_count(tenant.vhost()).await.map_err(port)?;
        if queues > 0 {
            return Ok(Converged::NeedsPerson(format!(
                "its creation was cut short (built-in exchanges missing: {missing}) and it holds {queues} queue(s): move their messages out, delete the vhost and run reconcile"
            )));
        }
        self.delete_vhost(tenant.vhost()).await.map_err(port)?;
        self.create_vhost(tenant).await?;
        Ok(Converged::Repaired(format!(
            "its creation had been cut short (built-in exchanges missing: {missing}); it held no queue and is created again"
        )))
    }
}

impl TenantBroker for ManagementClient {
    async fn ensure_vhost(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        match self.get_vhost(tenant.vhost()).await.map_err(port)? {
            Some(v) if v.is_tenant_vhost() => self.ensure_vhost_whole(tenant).await,
            Some(_) => Err(foreign(
                "vhost",
                tenant.vhost(),
                format!("it has no `{TENANT_VHOST_TAG}` tag"),
            )),
            None => {
                self.create_vhost(tenant).await?;
                Ok(Converged::Created)
            }
        }
    }

    async fn ensure_vhost_running(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        let Some(vhost) = self.get_vhost(tenant.vhost()).await.map_err(port)? else {
            return Err(Transient::wrap(
                "the vhost vanished while being checked; retry",
                None,
            ));
        };
        let stopped: Vec<String> = vhost.stopped_on().iter().map(|n| n.to_string()).collect();
        if stopped.is_empty() {
            return Ok(Converged::Unchanged);
        }
        for node in &stopped {
            self.start_vhost(tenant.vhost(), node).await.map_err(port)?;
        }
        Ok(Converged::Repaired(format!(
            "it was stopped on {} and is started again",
            stopped.join(", ")
        )))
    }

    async fn ensure_user(&self, tenant: &TenantId, password: &Password) -> Result<Converged, PortError> {
        let outcome = match self.get_user(tenant.rabbitmq_user()).await.map_err(port)? {
            None => Converged::Created,
            Some(user) if user.tags.is_empty() && user.has_password(password) => {
                return Ok(Converged::Unchanged);
            }
            Some(_) => {
                // Not obviously ours: look at its permissions before touching it.
                let Some((user, permissions, tagged)) = self.observe_user(tenant).await.map_err(port)? else {
                    return Err("the user vanished while being checked; retry".into());
                };
                if let Some(why) = user_not_ours(&user, None, tagged, &permissions) {
                    return Err(foreign("RabbitMQ user", tenant.rabbitmq_user(), why));
                }
                Converged::Repaired("its password did not match the stored secret".into())
            }
        };
        // No tags: the tenant may use AMQP, not the management API.
        self.put_user(tenant.rabbitmq_user(), password, &[])
            .await
            .map_err(port)?;
        Ok(outcome)
    }

    async fn ensure_permission(&self, tenant: &TenantId) -> Result<Converged, PortError> {
        let user = tenant.rabbitmq_user();
        let permissions = self.user_permissions(user).await.map_err(port)?;
        let full = |p: &Permission| p.configure == ".*" && p.write == ".*" && p.read == ".*";
        let own = permissions.iter().find(|p| p.vhost == tenant.vhost());
        let mut repaired = Vec::new();
        if !own.is_some_and(full) {
            self.put_permission(tenant.vhost(), user, ".*", ".*", ".*")
                .await
                .map_err(port)?;
            if own.is_some() {
                repaired.push("its rights on its vhost were not `.*` configure/write/read".to_owned());
            }
        }
        for other in permissions.iter().filter(|p| p.vhost != tenant.vhost()) {
            self.delete_permission(&other.vhost, user).await.map_err(port)?;
            repaired.push(format!("revoked its rights on vhost `{}`", other.vhost));
        }
        Ok(match (own, repaired.is_empty()) {
            (_, false) => Converged::Repaired(repaired.join("; ")),
            (None, true) => Converged::Created,
            (Some(_), true) => Converged::Unchanged,
        })
    }

    async fn remove_user(&self, tenant: &TenantId, stored: Option<&Password>) -> Result<Removed, PortError> {
        let Some((user, permissions, tagged)) = self.observe_user(tenant).await.map_err(port)? else {
            return Ok(Removed::AlreadyAbsent);
        };
        if let Some(why) = user_not_ours(&user, stored, tagged, &permissions) {
            return Ok(Removed::LeftAlone(why));
        }
        self.delete_user(tenant.rabbitmq_user()).await.map_err(port)
    }

    async fn user_has_password(&self, tenant: &TenantId, password: &Password) -> Result<bool, PortError> {
        Ok(self
            .get_user(tenant.rabbitmq_user())
            .await
            .map_err(port)?
            .is_some_and(|u| u.tags.is_empty() && u.has_password(password)))
    }

    async fn close_connections(&self, tenant: &TenantId) -> Result<(), PortError> {
        self.close_user_connections(tenant.rabbitmq_user(), "password rotated")
            .await
            .map_err(port)
    }

    async fn ensure_limits(&self, tenant: &TenantId, limits: &BrokerLimits) -> Result<Converged, PortError> {
        let vhost_wanted = [
            ("max-connections", limits.vhost_connections),
            ("max-queues", limits.vhost_queues),
        ];
        let user_wanted = [
            ("max-connections", limits.user_connections),
            ("max-channels", limits.user_channels),
        ];
        let (on_vhost, on_user) = tokio::try_join!(
            self.vhost_limits(tenant.vhost()),
            self.user_limits(tenant.rabbitmq_user())
        )
        .map_err(port)?;
        let mut changed = Vec::new();
        for (name, value) in vhost_wanted {
            if on_vhost.get(name) != Some(&(value as i64)) {
                self.put_vhost_limit(tenant.vhost(), name, value)
                    .await
                    .map_err(port)?;
                changed.push((format!("vhost {name}"), on_vhost.get(name).copied()));
            }
        }
        for (name, value) in user_wanted {
            if on_user.get(name) != Some(&(value as i64)) {
                self.put_user_limit(tenant.rabbitmq_user(), name, value)
                    .await
                    .map_err(port)?;
                changed.push((format!("user {name}"), on_user.get(name).copied()));
            }
        }
        Ok(limits_outcome(&changed))
    }

    async fn remove_vhost(&self, tenant: &TenantId) -> Result<Removed, PortError> {
        match self.get_vhost(tenant.vhost()).await.map_err(port)? {
            None => Ok(Removed::AlreadyAbsent),
            Some(v) if !v.is_tenant_vhost() => {
                Ok(Removed::LeftAlone(format!("it has no `{TENANT_VHOST_TAG}` tag")))
            }
            Some(_) => Ok(self.delete_vhost(tenant.vhost()).await.map_err(port)?),
        }
    }
}

/// What setting limits did: created when none were set, repaired when some differed.
pub fn limits_outcome(changed: &[(String, Option<i64>)]) -> Converged {
    if changed.is_empty() {
        return Converged::Unchanged;
    }
    if changed.iter().all(|(_, before)| before.is_none()) {
        return Converged::Created;
    }
    let what: Vec<String> = changed
        .iter()
        .map(|(name, before)| match before {
            Some(v) => format!("{name} was {v}"),
            None => format!("{name} was unset"),
        })
        .collect();
    Converged::Repaired(format!("limits differed ({}); set again", what.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::rabbitmq::model::tests::user;

    #[test]
    fn the_ownership_rule_for_tagless_users() {
        let mine = user(
            "u4ztcx2N6czrDkKFH0fMqJnGWuxFBW7SpHbbs4jHbIl414OC",
            "rabbit_password_hashing_sha256",
        );
        let on_own = vec![Permission {
            user: "u".into(),
            vhost: "u".into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }];
        let pw = Password::new("s3cret");
        let other = Password::new("other");
        assert_eq!(user_not_ours(&mine, Some(&pw), false, &[]), None);
        assert_eq!(user_not_ours(&mine, Some(&other), true, &on_own), None);
        assert!(user_not_ours(&mine, Some(&other), false, &on_own).is_some());
        assert!(user_not_ours(&mine, None, true, &[]).is_some());
        let mut tagged = mine.clone();
        tagged.tags = vec!["management".into()];
        assert!(
            user_not_ours(&tagged, Some(&pw), true, &on_own)
                .unwrap()
                .contains("tags")
        );
    }
}
