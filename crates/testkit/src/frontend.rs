//! A frontend of the local stack, as a browser app would be: users signed up and confirmed in
//! moto's Cognito, provisioned by the real `post-confirmation` function with their real `sub`,
//! signed in with InitiateAuth, calling the `tenant-credentials` function URL.

use std::time::Duration;

use aws_sdk_cognitoidentityprovider::Client;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde_json::{Value, json};

use crate::cognito::{self, Tokens, User};
use crate::events;
use crate::lambda::invoke;
use crate::settle::until_complete;
use crate::stack::Stack;

pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

/// A frontend of the stack: its users in moto's Cognito, its calls to the tenant-credentials
/// function URL of the emulator.
pub struct Frontend {
    pub stack: Stack,
    pub http: reqwest::Client,
    pub cognito: Client,
    pub pool: String,
    pub client_id: String,
    /// Straight to the real servers, for checks.
    pub app: tgsearch::app::AppContext,
}

impl Frontend {
    pub async fn new() -> Self {
        let stack = Stack::require();
        stack.lambda_endpoint();
        let cognito = Client::new(&stack.aws().await);
        let app = stack.app().await;
        Self {
            app,
            pool: stack.var("USER_POOL_ID").to_owned(),
            client_id: stack.frontend_client_id().to_owned(),
            stack,
            http: reqwest::Client::new(),
            cognito,
        }
    }

    /// `GET <function URL><path_and_query>` with these Authorization headers, in this order.
    pub async fn get(&self, path_and_query: &str, authorization: &[&str]) -> Answer {
        self.request(reqwest::Method::GET, path_and_query, authorization)
            .await
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        authorization: &[&str],
    ) -> Answer {
        let url = format!(
            "{}/lambda-url/tenant-credentials{path_and_query}",
            self.stack.lambda_endpoint()
        );
        let mut request = self.http.request(method, url).timeout(Duration::from_secs(120));
        for value in authorization {
            request = request.header(AUTHORIZATION, *value);
        }
        let response = request.send().await.expect("the emulator answers");
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    pub async fn user(&self, label: &str) -> User {
        cognito::sign_up_confirmed(&self.cognito, &self.pool, &self.client_id, label)
            .await
            .unwrap()
    }

    pub async fn sign_in(&self, user: &User) -> Tokens {
        cognito::sign_in(&self.cognito, &self.client_id, &user.username)
            .await
            .unwrap()
    }

    /// What Cognito does on a confirmed sign-up: invoke post-confirmation with the user's `sub`.
    pub async fn provision(&self, user: &User) {
        let mut event = events::signup_for(&user.tenant);
        event["userName"] = user.username.clone().into();
        event["request"]["userAttributes"]["email"] = user.email.clone().into();
        invoke(
            &self.http,
            self.stack.lambda_endpoint(),
            "post-confirmation",
            &event,
        )
        .await
        .unwrap()
        .unwrap_ok();
        // Done, or handed to the worker: complete once the stack's poller has run it.
        until_complete(&self.app.provisioner, &user.tenant).await;
    }

    /// The user leaves: their Cognito user first, then (as teardown requires) their tenant.
    pub async fn remove(&self, user: &User) {
        cognito::delete_user(&self.cognito, &self.pool, &user.username)
            .await
            .unwrap();
        let payload = json!({ "sub": user.tenant.as_str() });
        invoke(&self.http, self.stack.lambda_endpoint(), "teardown", &payload)
            .await
            .unwrap()
            .unwrap_ok();
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
