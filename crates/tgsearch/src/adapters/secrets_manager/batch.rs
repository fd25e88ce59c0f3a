//! Many tenants' current secrets at once, for the fleet's view: BatchGetSecretValue, 20 secrets
//! per call, a few calls at once, instead of one GetSecretValue per tenant.

use futures::{StreamExt, TryStreamExt};

use super::{CURRENT, SecretsError, SecretsManager, api_error};

/// Secrets per BatchGetSecretValue call (the API's maximum).
const PER_CALL: usize = 20;
/// Calls in flight.
const AT_ONCE: usize = 4;

impl SecretsManager {
    /// The current (`AWSCURRENT`) string of each of `names` that exists, as `(name, string)`.
    /// A secret the batch answers with another version (moto answers a secret's first version
    /// after a rotation) is read again by its label.
    pub async fn current_strings(&self, names: &[String]) -> Result<Vec<(String, String)>, SecretsError> {
        let batches: Vec<Vec<(String, String)>> = futures::stream::iter(names.chunks(PER_CALL))
            .map(|chunk| self.batch(chunk))
            .buffer_unordered(AT_ONCE)
            .try_collect()
            .await?;
        Ok(batches.into_iter().flatten().collect())
    }

    async fn batch(&self, names: &[String]) -> Result<Vec<(String, String)>, SecretsError> {
        let first = names.first().map(String::as_str).unwrap_or_default();
        let out = self
            .client
            .batch_get_secret_value()
            .set_secret_id_list(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| api_error("BatchGetSecretValue", first, e))?;
        let mut values = Vec::with_capacity(names.len());
        for secret in out.secret_values() {
            let Some(name) = secret.name() else { continue };
            let current = secret.version_stages().iter().any(|s| s == CURRENT);
            match (current, secret.secret_string()) {
                (true, Some(text)) => values.push((name.to_owned(), text.to_owned())),
                _ => {
                    if let Some(text) = self.read_string(name).await? {
                        values.push((name.to_owned(), text));
                    }
                }
            }
        }
        Ok(values)
    }
}
