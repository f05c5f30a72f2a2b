"""GA4 default channel grouping from UTM parameters, click ids and the referrer.

The rules follow Google Analytics 4's "Default channel group" definitions, evaluated in
GA4's order (first match wins).  GA4 matches the session's *source* against its published
lists of search, social, shopping and video sites; the lists below hold the common ones.
Inputs come from the session's first event (the landing page), as GA4 does.

Source and medium when UTM is missing:

* ``gclid`` → google / cpc, ``msclkid`` → bing / cpc (auto-tagged paid search clicks);
* ``fbclid`` → facebook / social — Facebook adds it to *every* outbound link, paid or not,
  so on its own it is Organic Social (a paid Facebook ad sets ``utm_medium=paid``...);
* an external referrer → its host / referral (search / social / video hosts are then
  classified by the source lists, as GA4 does);
* nothing → (direct) / (none).
"""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit

CHANNELS = (
    "Direct",
    "Cross-network",
    "Paid Shopping",
    "Paid Search",
    "Paid Social",
    "Paid Video",
    "Display",
    "Paid Other",
    "Organic Shopping",
    "Organic Social",
    "Organic Video",
    "Organic Search",
    "Referral",
    "Email",
    "Affiliates",
    "Audio",
    "SMS",
    "Mobile Push Notifications",
    "Unassigned",
)

SEARCH_SITES = frozenset(
    "google bing yahoo duckduckgo baidu yandex ecosia naver ask aol seznam qwant startpage "
    "brave sogou so daum yahoo.co.jp search.yahoo msn".split()
)
SOCIAL_SITES = frozenset(
    "facebook fb instagram ig twitter t.co x linkedin lnkd.in reddit pinterest tiktok snapchat "
    "quora tumblr vk weibo threads mastodon discord whatsapp telegram line messenger "
    "news.ycombinator.com ycombinator".split()
)
SHOPPING_SITES = frozenset("amazon ebay etsy shopify walmart aliexpress google shopping shopping".split()) - {"google"}
VIDEO_SITES = frozenset("youtube youtu.be vimeo twitch dailymotion wistia netflix".split())

_PAID_MEDIUM = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*)$")
_SHOP_CAMPAIGN = re.compile(r"^(.*(([^a-df-z]|^)shop|shopping).*)$")
_DISPLAY_MEDIUM = frozenset(("display", "banner", "expandable", "interstitial", "cpm"))
_SOCIAL_MEDIUM = frozenset(("social", "social-network", "social-media", "sm", "social network", "social media"))
_EMAIL = frozenset(("email", "e-mail", "e_mail", "e mail"))


def _site_name(host: str) -> str:
    """'www.google.co.uk' → 'google', 't.co' → 't.co', 'm.facebook.com' → 'facebook'."""
    host = host.lower().strip(".")
    if host.startswith("www."):
        host = host[4:]
    if host in SOCIAL_SITES or host in SEARCH_SITES or host in VIDEO_SITES:
        return host
    parts = host.split(".")
    if len(parts) >= 3 and len(parts[-1]) == 2 and parts[-2] in ("co", "com", "org", "net", "ac", "gov"):
        parts = parts[:-2]  # google.co.uk
    elif len(parts) >= 2:
        parts = parts[:-1]  # google.com
    return parts[-1] if parts else host


def _in(source: str, sites: frozenset[str]) -> bool:
    if not source:
        return False
    return source in sites or _site_name(source) in sites


@functools.lru_cache(maxsize=4096)
def referrer_host(referrer: str) -> str:
    if not referrer:
        return ""
    try:
        host = urlsplit(referrer if "//" in referrer else "//" + referrer).hostname or ""
    except ValueError:
        return ""
    return host.lower()


def source_medium(
    utm_source: str,
    utm_medium: str,
    gclid: str,
    fbclid: str,
    msclkid: str,
    referrer: str,
    own_hosts: frozenset[str] = frozenset(),
) -> tuple[str, str]:
    """The session's (source, medium), lower-cased, as GA4 would attribute it."""
    source = utm_source.strip().lower()
    medium = utm_medium.strip().lower()
    if source or medium:
        return (source or "(not set)", medium or "(not set)")
    if gclid:
        return ("google", "cpc")
    if msclkid:
        return ("bing", "cpc")
    host = referrer_host(referrer)
    if host and not _is_own(host, own_hosts):
        if fbclid:
            return ("facebook", "social")
        return (host, "referral")
    if fbclid:
        return ("facebook", "social")
    return ("(direct)", "(none)")


def _is_own(host: str, own_hosts: frozenset[str]) -> bool:
    if not own_hosts:
        return False
    if host in own_hosts:
        return True
    return any(host.endswith("." + h) for h in own_hosts)


@functools.lru_cache(maxsize=8192)
def channel_group(source: str, medium: str, campaign: str = "") -> str:
    """GA4 default channel group of a (source, medium, campaign)."""
    campaign = campaign.lower()
    if source == "(direct)" and medium in ("(none)", "(not set)"):
        return "Direct"
    if "cross-network" in campaign:
        return "Cross-network"
    paid = bool(_PAID_MEDIUM.match(medium))
    shopping = _in(source, SHOPPING_SITES) or bool(_SHOP_CAMPAIGN.match(campaign))
    if shopping and paid:
        return "Paid Shopping"
    if _in(source, SEARCH_SITES) and paid:
        return "Paid Search"
    if _in(source, SOCIAL_SITES) and paid:
        return "Paid Social"
    if _in(source, VIDEO_SITES) and paid:
        return "Paid Video"
    if medium in _DISPLAY_MEDIUM:
        return "Display"
    if paid:
        return "Paid Other"
    if shopping:
        return "Organic Shopping"
    if _in(source, SOCIAL_SITES) or medium in _SOCIAL_MEDIUM:
        return "Organic Social"
    if _in(source, VIDEO_SITES) or "video" in medium:
        return "Organic Video"
    if _in(source, SEARCH_SITES) or medium == "organic":
        return "Organic Search"
    if medium in ("referral", "app", "link"):
        return "Referral"
    if source in _EMAIL or medium in _EMAIL:
        return "Email"
    if medium == "affiliate":
        return "Affiliates"
    if medium == "audio":
        return "Audio"
    if source == "sms" or medium == "sms":
        return "SMS"
    if medium.endswith("push") or "mobile" in medium or "notification" in medium or source == "firebase":
        return "Mobile Push Notifications"
    return "Unassigned"


def classify(
    utm_source: str = "",
    utm_medium: str = "",
    utm_campaign: str = "",
    gclid: str = "",
    fbclid: str = "",
    msclkid: str = "",
    referrer: str = "",
    own_hosts: frozenset[str] = frozenset(),
) -> str:
    """GA4 default channel group of a landing event."""
    source, medium = source_medium(utm_source, utm_medium, gclid, fbclid, msclkid, referrer, own_hosts)
    return channel_group(source, medium, utm_campaign)
