//! The discovery documents of the event service: `version`, `application.wadl`,
//! `catalogs` and `contributors`.

use std::fmt::Write as _;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::params::PARAMS;
use super::{SERVICE_VERSION, fdsn_http_error};
use crate::{AppState, db};

fn text(content_type: &str, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(body)
}

/// `GET /fdsnws/event/1/version`: text/plain `1.2.0`.
pub(crate) async fn version() -> HttpResponse {
    text("text/plain; charset=utf-8", format!("{SERVICE_VERSION}\n"))
}

fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
}

/// `GET /fdsnws/event/1/application.wadl`: every parameter `query` accepts, with its type,
/// none required. The base is the request's own directory, wherever the surface is mounted.
pub(crate) async fn application_wadl(req: HttpRequest) -> HttpResponse {
    let base = super::sibling_url(&req, "");
    let mut params = String::new();
    for p in PARAMS.iter() {
        let _ = writeln!(
            params,
            "          <param name=\"{}\" style=\"query\" type=\"{}\" required=\"false\"><doc xml:lang=\"en\" title=\"{}\"/></param>",
            p.name,
            p.xs_type,
            xml_attr(p.doc)
        );
        for alias in p.aliases {
            let _ = writeln!(
                params,
                "          <param name=\"{alias}\" style=\"query\" type=\"{}\" required=\"false\"><doc xml:lang=\"en\" title=\"alias of {}\"/></param>",
                p.xs_type, p.name
            );
        }
    }
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<application xmlns="http://wadl.dev.java.net/2009/02" xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <doc title="quakesync FDSN event web service {SERVICE_VERSION}"/>
  <resources base="{base}">
    <resource path="/"><method name="GET"><response><representation mediaType="text/plain"/></response></method></resource>
    <resource path="query">
      <method name="GET" id="query">
        <request>
{params}        </request>
        <response status="200">
          <representation mediaType="application/xml"/>
          <representation mediaType="text/plain"/>
          <representation mediaType="text/csv"/>
          <representation mediaType="application/json"/>
        </response>
        <response status="204 400 404 409 413 500 503"><representation mediaType="text/plain"/></response>
      </method>
    </resource>
    <resource path="count">
      <method name="GET" id="count">
        <request>
{params}        </request>
        <response status="200"><representation mediaType="text/plain"/><representation mediaType="application/json"/></response>
        <response status="400 500 503"><representation mediaType="text/plain"/></response>
      </method>
    </resource>
    <resource path="catalogs"><method name="GET"><response status="200"><representation mediaType="application/xml"/></response></method></resource>
    <resource path="contributors"><method name="GET"><response status="200"><representation mediaType="application/xml"/></response></method></resource>
    <resource path="version"><method name="GET"><response status="200"><representation mediaType="text/plain"/></response></method></resource>
    <resource path="application.wadl"><method name="GET"><response status="200"><representation mediaType="application/xml"/></response></method></resource>
  </resources>
</application>
"#
    );
    text("application/xml", body)
}

fn name_list(root: &str, child: &str, names: &[String]) -> String {
    let mut body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root}>\n");
    for n in names {
        let _ = writeln!(
            body,
            "  <{child}>{}</{child}>",
            xml_attr(n).replace('>', "&gt;")
        );
    }
    let _ = writeln!(body, "</{root}>");
    body
}

/// `GET /fdsnws/event/1/catalogs`: `<Catalogs><Catalog>us</Catalog>…</Catalogs>`.
pub(crate) async fn catalogs(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let store = state.engine().store().clone();
    match db(store.catalogs()).await {
        Ok(names) => text("application/xml", name_list("Catalogs", "Catalog", &names)),
        Err(e) => fdsn_http_error(&req, e),
    }
}

/// `GET /fdsnws/event/1/contributors`: `<Contributors><Contributor>ci</Contributor>…`.
pub(crate) async fn contributors(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let store = state.engine().store().clone();
    match db(store.contributors()).await {
        Ok(names) => text(
            "application/xml",
            name_list("Contributors", "Contributor", &names),
        ),
        Err(e) => fdsn_http_error(&req, e),
    }
}
