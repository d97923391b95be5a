//! The `discover` option's napi side: a JavaScript function that sends the endpoint
//! discovery request the core built, wrapped as a [`DiscoveryHook`]. `index.js` normalises
//! the user's function to `(requestJson) => Promise<responseText>`, so this file only
//! converts.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use serde_json::json;

use crate::core::discovery::{DiscoveryCall, DiscoveryFuture, DiscoveryHook, SharedDiscoveryHook};

/// Weak (it never keeps Node alive by itself) and `CalleeHandled = false`: one JSON text
/// in, a promise of the response text back.
type DiscoverCallback = ThreadsafeFunction<String, Promise<String>, String, Status, false, true>;

/// The JavaScript function the caller passed, once per transport.
pub type DiscoverFunction<'env> = Function<'env, String, Promise<String>>;

struct JsDiscovery {
    callback: Arc<DiscoverCallback>,
}

impl DiscoveryHook for JsDiscovery {
    fn discover(&self, call: DiscoveryCall) -> DiscoveryFuture {
        let callback = self.callback.clone();
        let request = json!({
            "url": call.url,
            "method": "POST",
            "headers": call
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect::<serde_json::Map<_, _>>(),
            "body": call.body,
            "timeoutMs": call.timeout.as_millis() as f64,
        })
        .to_string();
        Box::pin(async move {
            // A synchronous throw and a rejection both arrive as an Err with the JS
            // message; the core scrubs it.
            let answer = callback
                .call_async_catch(request)
                .await
                .map_err(|e| e.reason)?;
            answer.await.map_err(|e| e.reason)
        })
    }
}

/// Wraps `discover` for the core's configuration.
pub fn hook_from_function(discover: DiscoverFunction<'_>) -> Result<SharedDiscoveryHook> {
    let callback: DiscoverCallback = discover
        .build_threadsafe_function::<String>()
        .weak::<true>()
        .callee_handled::<false>()
        .build()?;
    Ok(SharedDiscoveryHook(Arc::new(JsDiscovery {
        callback: Arc::new(callback),
    })))
}
