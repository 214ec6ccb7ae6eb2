"""The gateway's own routes under `/v1/auth`: sign-in (OAuth2 password flow), who am I, create a user."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm

from shared.auth import Principal, current_principal, require_roles

from gateway.access import client_ip
from gateway.identity import AccessToken, Identity, NewUser, User, normalize_username
from gateway.limits import TokenBuckets, rate_limited

# Declares the scheme in the OpenAPI document, so that /docs offers "Authorize" with a sign-in form.
# Tokens are checked by shared.auth.current_principal, which answers in the common error shape.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)

router = APIRouter(prefix="/v1/auth", tags=["auth"])


def get_identity(request: Request) -> Identity:
    return request.app.state.identity


IdentityDep = Annotated[Identity, Depends(get_identity)]


def authenticated(request: Request, _token: Annotated[str | None, Depends(oauth2_scheme)]) -> Principal:
    return current_principal(request)


Authenticated = Annotated[Principal, Depends(authenticated)]


@router.post("/token", response_model=AccessToken, summary="Đăng nhập / sign in (OAuth2 password flow)",
             responses={401: {"description": "Sai tên đăng nhập hoặc mật khẩu / wrong username or password"},
                        429: {"description": "Quá nhiều lần thử / too many attempts"}})
async def sign_in(request: Request, response: Response, form: Annotated[OAuth2PasswordRequestForm, Depends()],
                  identity: IdentityDep) -> AccessToken:
    buckets: TokenBuckets = request.app.state.signin_buckets
    ip = client_ip(request.scope, request.app.state.settings.trust_forwarded_headers)
    wait = buckets.take(f"{ip}|{normalize_username(form.username)}")
    if wait > 0:
        raise rate_limited(wait, "Quá nhiều lần đăng nhập, vui lòng thử lại sau / "
                                 "too many sign-in attempts, retry later")
    token = await identity.sign_in(form.username, form.password)
    # RFC 6749 §5.1: a token answer must not be cached.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return token


@router.get("/me", response_model=User, summary="Tài khoản đang đăng nhập / the signed-in account")
async def me(principal: Authenticated, identity: IdentityDep) -> User:
    return await identity.who(principal)


@router.post("/users", response_model=User, status_code=201,
             summary="Tạo tài khoản / create an account (admin)",
             dependencies=[Depends(oauth2_scheme), require_roles("admin")])
async def create_user(new: NewUser, identity: IdentityDep) -> User:
    return await identity.create_user(new)
