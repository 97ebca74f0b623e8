//! pages: the few server-rendered pages of the authorization flow (choice of identity
//! provider, consent screen, errors), in French for the people who use them. The consent
//! screen says in words what the app will be able to see and do.

use crate::auth::scopes::{ResourceScope, ScopeContext, Scopes};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"fr\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} — Carnet</title></head><body><main>\n<h1>{}</h1>\n{body}\n</main></body></html>\n",
        escape(title),
        escape(title)
    )
}

/// An error shown in the browser (never redirected to an app that could not be trusted).
pub fn error(title: &str, message: &str) -> String {
    page(title, &format!("<p>{}</p>", escape(message)))
}

/// The choice of identity provider: one link per provider.
pub fn choose_provider(client_name: &str, links: &[(String, String)]) -> String {
    let items: String = links
        .iter()
        .map(|(label, href)| {
            format!(
                "<li><a href=\"{}\">Se connecter avec {}</a></li>\n",
                escape(href),
                escape(label)
            )
        })
        .collect();
    page(
        "Connexion",
        &format!(
            "<p>L'application « {} » demande l'accès à votre dossier Carnet. \
             Identifiez-vous d'abord :</p>\n<ul>\n{items}</ul>",
            escape(client_name)
        ),
    )
}

/// What a resource type is, in words (for the consent screen).
fn type_words(resource_type: Option<&str>, context: ScopeContext) -> String {
    let whose = match context {
        ScopeContext::Patient => "de votre dossier",
        _ => "des dossiers auxquels vous avez accès",
    };
    match resource_type {
        None => format!("toutes les données {whose}"),
        Some(t) => {
            let what = match t {
                "Patient" => "l'identité et les coordonnées",
                "DocumentReference" => "les documents (ordonnances, résultats, comptes rendus)",
                "Binary" => "le contenu des documents",
                "Immunization" => "les vaccinations",
                "Appointment" => "les rendez-vous et rappels de l'agenda santé",
                "Consent" => "les règles d'accès (autorisations, blocages, masquages)",
                "AuditEvent" => "l'historique des accès",
                "Communication" => "les messages de la messagerie santé",
                "Practitioner" | "PractitionerRole" => "l'annuaire des professionnels de santé",
                "Organization" => "l'annuaire des établissements",
                "RelatedPerson" => "les proches et représentants légaux",
                _ => "",
            };
            if what.is_empty() {
                format!("les données de type {t} {whose}")
            } else {
                format!("{what} ({t}) {whose}")
            }
        }
    }
}

fn permission_words(permissions: &str) -> String {
    let mut verbs = Vec::new();
    if permissions.contains('r') || permissions.contains('s') {
        verbs.push(if permissions.contains('s') {
            "consulter et rechercher"
        } else {
            "consulter"
        });
    }
    if permissions.contains('c') {
        verbs.push("ajouter");
    }
    if permissions.contains('u') {
        verbs.push("modifier");
    }
    if permissions.contains('d') {
        verbs.push("supprimer");
    }
    match verbs.len() {
        0 => String::new(),
        1 => verbs[0].to_string(),
        n => format!("{} et {}", verbs[..n - 1].join(", "), verbs[n - 1]),
    }
}

/// One sentence per scope granted, in words.
pub fn describe(scopes: &Scopes) -> Vec<String> {
    let mut out: Vec<String> = scopes
        .resources
        .iter()
        .map(|r: &ResourceScope| {
            let verbs = permission_words(&r.permissions);
            let mut s = format!(
                "{} {}",
                verbs,
                type_words(r.resource_type.as_deref(), r.context)
            );
            if let Some(first) = s.get(..1) {
                s = first.to_uppercase() + &s[1..];
            }
            s + "."
        })
        .collect();
    if scopes.has("openid") || scopes.has("fhirUser") {
        out.push("Savoir qui vous êtes (votre identifiant Carnet).".into());
    }
    if scopes.has("offline_access") {
        out.push(
            "Garder cet accès même quand vous n'utilisez pas l'application, jusqu'à ce que vous le retiriez."
                .into(),
        );
    } else if scopes.has("online_access") {
        out.push("Garder cet accès pendant que vous utilisez l'application.".into());
    }
    out
}

/// The consent screen: the app, what it asks in words, approve or refuse.
pub fn consent(
    client_name: &str,
    who: &str,
    sentences: &[String],
    action: &str,
    csrf: &str,
) -> String {
    let items: String = sentences
        .iter()
        .map(|s| format!("<li>{}</li>\n", escape(s)))
        .collect();
    page(
        "Autoriser l'application",
        &format!(
            "<p>Vous êtes connecté(e) en tant que {}.</p>\n\
             <p>L'application « {} » pourra :</p>\n<ul>\n{items}</ul>\n\
             <p>Vos règles d'accès (blocages, documents masqués) continuent de s'appliquer.</p>\n\
             <form method=\"post\" action=\"{}\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Autoriser</button>\n\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Refuser</button>\n\
             </form>",
            escape(who),
            escape(client_name),
            escape(action),
            escape(csrf)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_said_in_words_and_markup_is_escaped() {
        let words = describe(&Scopes::parse(
            "openid fhirUser offline_access patient/DocumentReference.rs patient/Immunization.cruds",
        ));
        assert!(words.contains(
            &"Consulter et rechercher les documents (ordonnances, résultats, comptes rendus) (DocumentReference) de votre dossier."
                .to_string()
        ));
        assert!(words.iter().any(|w| w.starts_with(
            "Consulter et rechercher, ajouter, modifier et supprimer les vaccinations"
        )));
        assert!(words
            .iter()
            .any(|w| w.contains("même quand vous n'utilisez pas")));
        let html = consent("<script>", "Patient/x", &words, "/auth/consent/1", "\"x");
        assert!(html.contains("« &lt;script&gt; »") && !html.contains("<script>"));
        assert!(html.contains("value=\"&quot;x\""));
    }
}
