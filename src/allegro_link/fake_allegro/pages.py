"""HTML of the fake's login, consent and error pages: Polish, inline CSS, no scripts, no external assets.

Ids and button texts are stable on purpose, for Playwright: `#login`, `#password`, and the buttons
"Zaloguj się" (`#login-submit`), "Powiąż konto" (`#consent`), "Zmień konto" (`#switch-account`),
"Anuluj" (`#cancel`). Every value that came from a request is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

AUTHORIZE_PATH = "/auth/oauth/authorize"
OAUTH_QUERY_FIELD = "oauth_query"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f2f2f2;color:#222;margin:0}
main{max-width:420px;margin:48px auto;background:#fff;padding:32px;border-radius:4px;
box-shadow:0 1px 3px rgba(0,0,0,.15)}
.logo{color:#ff5a00;font-weight:700;font-size:28px;margin:0 0 24px}
h1{font-size:20px;margin:0 0 16px}
label{display:block;margin:16px 0 4px;font-size:14px}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:10px;border:1px solid #bbb;
border-radius:2px;font-size:16px}
.buttons{display:flex;flex-direction:column;gap:8px;margin-top:24px}
button{padding:12px;font-size:16px;border-radius:2px;border:1px solid #ff5a00;background:#fff;color:#ff5a00;
cursor:pointer}
button.primary{background:#ff5a00;color:#fff}
.error{background:#fde8e8;border-left:4px solid #d00;padding:8px 12px}
.account{background:#fff4ec;padding:12px;border-radius:2px}
ul{padding-left:20px;font-size:13px;color:#555}
"""


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="pl"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} - Allegro</title><style>{_CSS}</style></head>"
        f'<body><main><p class="logo">allegro</p>{body}</main></body></html>'
    )


def _hidden_query(oauth_query: str) -> str:
    return f'<input type="hidden" name="{OAUTH_QUERY_FIELD}" value="{escape(oauth_query)}">'


def login_page(*, oauth_query: str, client_name: str, error: str | None = None) -> str:
    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (
        "<h1>Zaloguj się</h1>"
        f"<p>Aplikacja <strong>{escape(client_name)}</strong> chce uzyskać dostęp do Twojego konta.</p>"
        f"{message}"
        f'<form id="login-form" method="post" action="{AUTHORIZE_PATH}">'
        f"{_hidden_query(oauth_query)}"
        '<label for="login">Login lub e-mail</label>'
        '<input id="login" name="login" type="text" autocomplete="username" required autofocus>'
        '<label for="password">Hasło</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password">'
        '<div class="buttons">'
        '<button id="login-submit" class="primary" type="submit" name="action" value="login">'
        "Zaloguj się</button>"
        "</div></form>"
    )
    return _document("Logowanie", body)


def consent_page(
    *, oauth_query: str, client_name: str, login: str, scopes: Sequence[str], confirm_account: bool
) -> str:
    who = escape(login)
    # prompt=confirm: the "confirm account" screen, so that a session left over in this browser
    # is not linked by accident.
    heading = (
        f"Kontynuuj jako {who}" if confirm_account else f"Powiąż konto z aplikacją {escape(client_name)}"
    )
    scope_items = "".join(f"<li>{escape(scope)}</li>" for scope in scopes)
    body = (
        f'<h1 id="consent-heading">{heading}</h1>'
        f'<p class="account">Zalogowano jako <strong id="current-login">{who}</strong></p>'
        f"<p>Aplikacja <strong>{escape(client_name)}</strong> prosi o dostęp do:</p>"
        f"<ul>{scope_items}</ul>"
        f'<form id="consent-form" method="post" action="{AUTHORIZE_PATH}">'
        f"{_hidden_query(oauth_query)}"
        '<div class="buttons">'
        '<button id="consent" class="primary" type="submit" name="action" value="consent">'
        "Powiąż konto</button>"
        '<button id="switch-account" type="submit" name="action" value="switch">Zmień konto</button>'
        '<button id="cancel" type="submit" name="action" value="cancel">Anuluj</button>'
        "</div></form>"
    )
    return _document("Powiązanie konta", body)


def error_page(detail: str) -> str:
    body = (
        "<h1>Przepraszamy, nie możemy wyświetlić strony</h1>"
        f'<p class="error" id="error-detail">{escape(detail)}</p>'
        "<p>Sprawdź adres, z którego tu trafiłeś, albo wróć do aplikacji i spróbuj ponownie.</p>"
    )
    return _document("Błąd", body)


def oauth_error_landing() -> str:
    # The error itself is in the URL fragment, which never reaches a server.
    body = (
        "<h1>Przepraszamy, nie możemy wyświetlić strony</h1>"
        "<p>Autoryzacja się nie powiodła. Szczegóły błędu są w adresie tej strony.</p>"
    )
    return _document("Błąd autoryzacji", body)
