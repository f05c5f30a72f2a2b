"""Believable traffic, deterministically from a seed.

Per site: human visitors (device, browser, place, acquisition channel, a latent interest in
buying) who come back over days; their sessions (separated by hours, so by far more than
the 30-minute idle gap) walk the site map; every page view brings scrolls, clicks (dead
clicks, rage-click bursts), engagement pings, sometimes add-to-cart, forms, identify, custom
events and errors; buying sessions go through product, cart and checkout to a purchase.
Bots (crawlers, headless browsers, webdriver-driven Chrome, HTTP scripts) request pages at
fixed intervals, never scroll and never engage.

Everything is planned first (visitors and session start times, small), then the events of
each session are generated when the timeline reaches the session's start and released in
send order through a heap, so memory stays bounded by the sessions active at one time.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from clickstream_lake.simulate import catalog as C
from clickstream_lake.simulate.model import DAY_MS, HOUR_MS, SimConfig, SimEvent

MIN_MS = 60_000
SESSION_MAX_MS = 2 * HOUR_MS  # a session is cut off after this (pages stop)
SESSION_MIN_GAP_MS = 3 * HOUR_MS  # between two session starts of a visitor (> max length + 30 min)
DWELL_MAX_MS = 20 * MIN_MS
PING_EVERY_MS = 30_000
HUMAN_EVENTS_PER_SESSION = 16.0  # measured mean, used to size bot traffic to bot_share

# median dwell time per page kind (ms)
DWELL_MEDIAN = {"home": 14_000, "category": 20_000, "product": 38_000, "pricing": 45_000, "blog": 80_000,
                "docs": 65_000, "cart": 22_000, "checkout": 70_000, "complete": 9_000}
# local hour -> relative traffic
HOUR_WEIGHT = (0.25, 0.15, 0.1, 0.08, 0.08, 0.12, 0.3, 0.55, 0.8, 0.95, 1.0, 1.0,
               0.95, 0.95, 1.0, 1.0, 0.95, 0.9, 0.9, 0.95, 1.0, 0.9, 0.7, 0.45)
BUY_PROBABILITY = {"direct": 0.10, "organic_search": 0.06, "paid_search": 0.13, "organic_social": 0.04,
                   "paid_social": 0.07, "email": 0.16, "referral": 0.07}


def _weighted(rng: random.Random, pairs) -> Any:
    values = [p[0] for p in pairs]
    weights = [p[1] for p in pairs]
    return rng.choices(values, weights)[0]


def _cum(pairs) -> tuple[list[Any], list[float]]:
    values, cum, total = [], [], 0.0
    for v, w in pairs:
        total += w
        values.append(v)
        cum.append(total)
    return values, cum


@dataclass(slots=True)
class Product:
    slug: str
    category: str
    price: float
    title: str


@dataclass(slots=True)
class Site:
    index: int
    site_id: str
    hostname: str
    domain: str
    origin: str
    categories: list[str]
    products: list[Product]
    volume_factor: float


@dataclass(slots=True)
class Visitor:
    key: str
    is_bot: bool
    kind: str  # human | crawler | headless | stealth | script
    headers: dict[str, str]
    screen: str = ""
    viewport: str = ""
    language: str = ""
    timezone: str = ""
    sdk_id: str = ""
    consent: bool | None = None
    hem: str = ""
    channel: str = "direct"
    interest: float = 0.0  # 0..1, how much the visitor leans to product/pricing/cart
    currency: str = "USD"
    device_type: str = "desktop"
    utc_offset_h: int = 0
    bot_interval_ms: int = 0
    sessions: list[int] = field(default_factory=list)  # start ms
    buy_sessions: set[int] = field(default_factory=set)  # indexes into sessions
    identified: bool = False


class _SiteSim:
    """Plans and generates one site's traffic."""

    def __init__(self, cfg: SimConfig, index: int, site_id: str, hostname: str, start_ms: int, end_ms: int):
        self.cfg = cfg
        self.rng = random.Random(f"clickstream-sim/{cfg.seed}/{site_id}")
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.site = self._make_site(index, site_id, hostname)
        self._places = _cum((p, p[7]) for p in C.PLACES)
        self._bot_places = _cum((p, p[7]) for p in C.BOT_PLACES)
        self._agents = {
            "desktop": _cum((a, a[3]) for a in C.DESKTOP_AGENTS),
            "mobile": _cum((a, a[3]) for a in C.MOBILE_AGENTS),
            "tablet": _cum((a, a[3]) for a in C.TABLET_AGENTS),
        }
        self._screens = {k: _cum(v) for k, v in C.SCREENS.items()}
        self._browse = {k: _cum(v) for k, v in C.BROWSE_NEXT.items()}
        self._research = {k: _cum(v) for k, v in C.RESEARCH_NEXT.items()}
        self._seq = 0

    # -- the site -----------------------------------------------------------------------------
    def _make_site(self, index: int, site_id: str, hostname: str) -> Site:
        rng = self.rng
        domain = hostname[2:] if hostname.startswith("t.") else hostname
        cats = rng.sample(C.CATEGORY_WORDS, 5)
        products = []
        for i in range(30):
            cat = cats[i % len(cats)]
            word = rng.choice(C.PRODUCT_WORDS)
            slug = f"{word}-{cat.rstrip('s')}-{100 + i}"
            price = round(math.exp(rng.gauss(3.8, 0.8)), 2)
            products.append(Product(slug, cat, max(4.99, min(price, 1999.0)), f"{word.title()} {cat.rstrip('s').title()}"))
        factor = min(3.0, max(0.3, math.exp(rng.gauss(0, 0.6))))
        return Site(index, site_id, hostname, domain, f"https://{domain}", cats, products, factor)

    # -- visitors ---------------------------------------------------------------------------------
    def _pick(self, cum: tuple[list[Any], list[float]]) -> Any:
        values, weights = cum
        return self.rng.choices(values, cum_weights=weights)[0]

    def _ip(self, octets: tuple[int, int]) -> str:
        r = self.rng.getrandbits(16)
        return f"{octets[0]}.{octets[1]}.{r >> 8}.{(r & 255) or 1}"

    def _geo_headers(self, place, ua: str, ip: str, known: bool = True) -> dict[str, str]:
        h = {"User-Agent": ua, "X-Forwarded-For": ip}
        if known:
            country, region, city, lat, lon = place[:5]
            h.update({"cf-ipcountry": country, "cf-region": region, "cf-ipcity": city,
                      "cf-iplatitude": f"{lat:.4f}", "cf-iplongitude": f"{lon:.4f}"})
        return h

    def _human(self, n: int) -> Visitor:
        rng = self.rng
        device = _weighted(rng, C.DEVICE_WEIGHTS)
        dtype, _browser, _os, _w, template = self._pick(self._agents[device])
        ua = template.format(v=rng.randint(118, 131), m=rng.randint(0, 6))
        screen = self._pick(self._screens[device])
        w, h = (int(x) for x in screen.split("x"))
        viewport = f"{w - (0 if device != 'desktop' else rng.choice((0, 15, 17)))}x{h - rng.choice((0, 80, 120, 140))}"
        place = self._pick(self._places)
        ip = self._ip(place[8])
        v = Visitor(
            key=f"{self.site.site_id}:h{n:06d}",
            is_bot=False,
            kind="human",
            headers=self._geo_headers(place, ua, ip, known=rng.random() > 0.03),
            screen=screen,
            viewport=viewport,
            language=place[5],
            timezone=place[6],
            sdk_id=f"{rng.getrandbits(128):032x}" if rng.random() < 0.85 else "",
            consent=True if rng.random() < 0.9 else (None if rng.random() < 0.7 else False),
            channel=_weighted(rng, C.CHANNELS),
            currency=C.CURRENCIES.get(place[0], "USD"),
            device_type=dtype,
            utc_offset_h=round(place[4] / 15),
        )
        if rng.random() < 0.35:
            email = f"{rng.choice(C.FIRST_NAMES)}.{rng.choice(C.LAST_NAMES)}{rng.randint(1, 999)}@{rng.choice(C.MAIL_DOMAINS)}"
            v.hem = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        # sessions: the first somewhere in the period, returns hours to days later
        n_sessions = 1
        will_buy = rng.random() < BUY_PROBABILITY[v.channel]
        p_return = 0.55 if will_buy else 0.33
        while rng.random() < p_return and n_sessions < 12:
            n_sessions += 1
            p_return *= 0.8
        span = self.end_ms - self.start_ms
        t = self._diurnal_time(self.start_ms, span, v.utc_offset_h)
        starts = [t]
        for _ in range(n_sessions - 1):
            t += SESSION_MIN_GAP_MS + int(rng.expovariate(1 / (20 * HOUR_MS)))
            if t >= self.end_ms - 5 * MIN_MS:
                break
            starts.append(t)
        v.sessions = starts
        v.interest = rng.betavariate(5, 2) if will_buy else rng.betavariate(1.2, 5)
        if will_buy:
            # usually buys on the last visit, sometimes already earlier
            v.buy_sessions.add(len(starts) - 1 if rng.random() < 0.75 else rng.randrange(len(starts)))
            if rng.random() < 0.7 and not v.hem:
                email = f"{rng.choice(C.FIRST_NAMES)}{rng.randint(1, 9999)}@{rng.choice(C.MAIL_DOMAINS)}"
                v.hem = hashlib.sha256(email.encode()).hexdigest()
        return v

    def _diurnal_time(self, lo: int, span: int, utc_offset_h: int) -> int:
        rng = self.rng
        for _ in range(20):
            t = lo + int(rng.random() * max(1, span - 10 * MIN_MS))
            local_hour = (t // HOUR_MS + utc_offset_h) % 24
            if rng.random() < HOUR_WEIGHT[local_hour]:
                return t
        return t

    def _bot(self, n: int) -> Visitor:
        rng = self.rng
        kind = _weighted(rng, C.BOT_KINDS)
        place = self._pick(self._bot_places)
        ip = self._ip(place[8])
        v = rng.randint(118, 131)
        if kind == "crawler":
            ua = rng.choice(C.CRAWLER_AGENTS).format(v=v)
        elif kind == "headless":
            ua = C.HEADLESS_AGENT.format(v=v)
        elif kind == "stealth":
            ua = C.DESKTOP_AGENTS[0][4].format(v=v, m=0)
        else:
            ua = rng.choice(C.SCRIPT_AGENTS)
        bot = Visitor(
            key=f"{self.site.site_id}:b{n:05d}",
            is_bot=True,
            kind=kind,
            headers=self._geo_headers(place, ua, ip),
            screen="800x600" if kind == "headless" else ("1920x1080" if kind == "stealth" else ""),
            viewport="800x600" if kind == "headless" else ("1920x1080" if kind == "stealth" else ""),
            language="en-US" if kind in ("headless", "stealth") else "",
            timezone="UTC" if kind in ("headless", "stealth") else "",
            bot_interval_ms=rng.choice((500, 1000, 1500, 2000, 3000, 5000)),
            utc_offset_h=0,
        )
        n_sessions = rng.randint(1, 3)
        span = self.end_ms - self.start_ms
        bot.sessions = sorted({self.start_ms + int(rng.random() * max(1, span - HOUR_MS)) for _ in range(n_sessions)})
        # keep starts of one bot at least SESSION_MIN_GAP_MS apart
        kept: list[int] = []
        for s in bot.sessions:
            if not kept or s - kept[-1] >= SESSION_MIN_GAP_MS:
                kept.append(s)
        bot.sessions = kept
        return bot

    # -- plan -----------------------------------------------------------------------------------------
    def plan(self) -> list[tuple[int, int, Visitor, int, int]]:
        """Session starts: (start_ms, order, visitor, session index, bot pages)."""
        cfg = self.cfg
        if cfg.visitors_per_site is not None:
            n_humans = cfg.visitors_per_site
        else:
            n_humans = max(1, round(120 * cfg.days * self.site.volume_factor))
        humans = [self._human(i) for i in range(n_humans)]
        plan: list[tuple[int, int, Visitor, int, int]] = []
        for v in humans:
            for i, s in enumerate(v.sessions):
                plan.append((s, len(plan), v, i, 0))
        human_sessions = len(plan)
        if cfg.bot_share > 0 and human_sessions:
            target = cfg.bot_share / (1 - cfg.bot_share) * human_sessions * HUMAN_EVENTS_PER_SESSION
            planned, n = 0.0, 0
            while planned < target:
                bot = self._bot(n)
                n += 1
                per_page = 2 if bot.kind in ("headless", "stealth") else 1
                for i, s in enumerate(bot.sessions):
                    # pages: enough to reach the target, a crawler takes more
                    pages = self.rng.randint(5, 40 if bot.kind == "crawler" else 15)
                    pages = max(1, min(pages, math.ceil((target - planned) / per_page)))
                    # the visit must end before the timeline does
                    pages = max(1, min(pages, (self.end_ms - 1 - s) // bot.bot_interval_ms // per_page))
                    plan.append((s, len(plan), bot, i, pages))
                    planned += pages * per_page
                    if planned >= target:
                        break
        plan.sort(key=lambda p: (p[0], p[1]))
        return plan

    # -- events -------------------------------------------------------------------------------------
    def events(self) -> Iterator[SimEvent]:
        heap: list[tuple[int, int, SimEvent]] = []
        push, pop = heapq.heappush, heapq.heappop
        counter = 0
        for start, _order, visitor, index, pages in self.plan():
            while heap and heap[0][0] <= start:
                yield pop(heap)[2]
            if visitor.is_bot:
                evs = self._bot_session(visitor, index, start, pages)
            else:
                evs = self._human_session(visitor, index, start)
            for ev in evs:
                counter += 1
                push(heap, (ev.send_ms, counter, ev))
        while heap:
            yield pop(heap)[2]

    # -- helpers for bodies -----------------------------------------------------------------------------
    def _eid(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def _page_url(self, kind: str, product: Product | None = None) -> tuple[str, str]:
        """(path, title) of a page of the given kind."""
        rng, site = self.rng, self.site
        name = site.domain.split(".")[0].title()
        if kind == "home":
            return "/", f"{name} — Home"
        if kind == "category":
            cat = rng.choice(site.categories)
            return f"/c/{cat}" + ("?sort=price" if rng.random() < 0.1 else ""), f"{cat.title()} | {name}"
        if kind == "product":
            p = product or rng.choice(site.products)
            return f"/p/{p.slug}", f"{p.title} | {name}"
        if kind == "pricing":
            return "/pricing", f"Pricing | {name}"
        if kind == "cart":
            return "/cart", f"Your cart | {name}"
        if kind == "checkout":
            return "/checkout", f"Checkout | {name}"
        if kind == "complete":
            return "/checkout/complete", f"Thank you | {name}"
        if kind == "blog":
            slug = rng.choice(C.BLOG_SLUGS)
            return f"/blog/{slug}", f"{slug.replace('-', ' ').capitalize()} | {name} blog"
        slug = rng.choice(C.DOCS_SLUGS)
        return f"/docs/{slug}", f"{slug.replace('-', ' ').capitalize()} | {name} docs"

    def _landing(self, v: Visitor, first: bool) -> tuple[str, str, str]:
        """(landing page kind, query string with UTM/click ids, external referrer)."""
        rng = self.rng
        channel = v.channel if first else _weighted(rng, (("direct", 50), ("organic_search", 30), ("email", 12),
                                                           (v.channel, 8)))
        campaign = rng.choice(C.CAMPAIGNS)
        if channel == "direct":
            return rng.choice(("home", "home", "home", "product", "pricing")), "", ""
        if channel == "organic_search":
            return (rng.choice(("home", "product", "blog", "docs", "category")), "",
                    _weighted(rng, C.SEARCH_REFERRERS))
        if channel == "paid_search":
            if rng.random() < 0.8:
                q = (f"utm_source=google&utm_medium=cpc&utm_campaign={campaign}"
                     f"&utm_term={rng.choice(C.SEARCH_TERMS).replace(' ', '+')}&gclid=Cj0KCQ{rng.getrandbits(80):020x}")
                ref = "https://www.google.com/"
            else:
                q = (f"utm_source=bing&utm_medium=cpc&utm_campaign={campaign}"
                     f"&utm_term={rng.choice(C.SEARCH_TERMS).replace(' ', '+')}&msclkid={rng.getrandbits(128):032x}")
                ref = "https://www.bing.com/"
            return rng.choice(("product", "category", "pricing")), q, ref
        if channel == "paid_social":
            src = rng.choice(("facebook", "instagram"))
            q = (f"utm_source={src}&utm_medium=paid_social&utm_campaign={campaign}"
                 f"&utm_content={rng.choice(C.AD_CONTENTS)}&fbclid=IwAR{rng.getrandbits(96):024x}")
            return rng.choice(("product", "category")), q, f"https://l.{src}.com/"
        if channel == "organic_social":
            ref = _weighted(rng, C.SOCIAL_REFERRERS)
            q = f"fbclid=IwAR{rng.getrandbits(96):024x}" if "facebook" in ref and rng.random() < 0.7 else ""
            return rng.choice(("blog", "product", "home")), q, ref
        if channel == "email":
            q = f"utm_source=newsletter&utm_medium=email&utm_campaign={rng.choice(C.EMAIL_CAMPAIGNS)}"
            return rng.choice(("product", "category", "blog")), q, ""
        return rng.choice(("home", "blog", "product")), "", rng.choice(C.REFERRAL_REFERRERS)

    # -- human sessions ------------------------------------------------------------------------------
    def _human_session(self, v: Visitor, index: int, start: int) -> list[SimEvent]:
        rng = self.rng
        site = self.site
        buying = index in v.buy_sessions
        session_key = f"{v.key}:s{index}"
        limit = min(self.end_ms, start + SESSION_MAX_MS)
        out: list[tuple[int, dict[str, Any]]] = []
        base: dict[str, Any] = {}
        if v.sdk_id:
            base["visitor_id"] = v.sdk_id
        if v.screen:
            base["screen"] = v.screen
            base["viewport"] = v.viewport
        base["language"] = v.language
        base["timezone"] = v.timezone
        if v.consent is not None:
            base["consent"] = v.consent

        kind, query, referrer = self._landing(v, index == 0)
        if buying:
            path = self._buyer_path(kind)
        else:
            path = self._browse_path(kind, v.interest)
        t = start
        prev_url = ""
        cart: list[tuple[Product, int]] = []
        rage_at: list[int] = []  # time of the third click of each rage burst
        for step, (page_kind, product) in enumerate(path):
            if t >= limit:
                break
            if page_kind == "product" and product is None:
                product = rng.choice(site.products)
            p, title = self._page_url(page_kind, product)
            if step == 0 and query:
                p += ("&" if "?" in p else "?") + query
            url = site.origin + p
            ref = referrer if step == 0 else prev_url
            body = {**base, "type": "page_view", "url": url, "title": title}
            if ref:
                body["referrer"] = ref
            out.append((t, body))
            if step == 0 and v.hem and v.identified and rng.random() < 0.3:
                # a known visitor logs in again
                out.append((t + rng.randint(2000, 9000), {**base, "type": "identify", "url": url, "hem": v.hem}))
            # time on this page
            med = DWELL_MEDIAN[page_kind] * (1.3 if v.interest > 0.5 and page_kind in ("product", "pricing") else 1.0)
            dwell = int(min(DWELL_MAX_MS, max(1500, rng.lognormvariate(math.log(med), 0.7))))
            if t + dwell >= limit:
                dwell = max(500, limit - t - 1)
            end = t + dwell
            third = self._page_activity(out, base, url, page_kind, t, dwell, v)
            if third is not None:
                rage_at.append(third)
            next_kind = path[step + 1][0] if step + 1 < len(path) else "exit"
            # commerce on this page
            if page_kind == "product" and product is not None and (
                next_kind == "cart" or (buying and next_kind in ("product", "pricing") and rng.random() < 0.4)
                or rng.random() < 0.04
            ):
                qty = 1 if rng.random() < 0.85 else 2
                cart.append((product, qty))
                out.append((t + int(dwell * 0.7), {**base, "type": "add_to_cart", "url": url,
                                                   "value": round(product.price * qty, 2), "currency": v.currency,
                                                   "target": "button.add-to-cart",
                                                   "props": {"product_id": product.slug, "quantity": qty}}))
            if page_kind == "checkout" and buying and cart:
                total = round(sum(pr.price * q for pr, q in cart), 2)
                order_id = f"ord-{rng.getrandbits(40):010x}"
                tf = t + int(dwell * 0.8)
                out.append((tf, {**base, "type": "form_submit", "url": url, "name": "checkout",
                                 "target": "form#checkout"}))
                if v.hem:
                    out.append((tf + 50, {**base, "type": "identify", "url": url, "hem": v.hem}))
                    v.identified = True
                out.append((tf + rng.randint(800, 3000), {**base, "type": "purchase", "url": url, "value": total,
                                                          "currency": v.currency, "order_id": order_id,
                                                          "props": {"items": sum(q for _, q in cart)}}))
                cart = []
            if page_kind in ("home", "blog") and v.hem and not v.identified and rng.random() < 0.06:
                tf = t + int(dwell * 0.6)
                out.append((tf, {**base, "type": "form_submit", "url": url, "name": "newsletter",
                                 "target": "form.newsletter"}))
                out.append((tf + 40, {**base, "type": "identify", "url": url, "hem": v.hem}))
                v.identified = True
            prev_url = url
            t = end + rng.randint(300, 2500)

        end_ms = self.end_ms
        buyer = any(b["type"] == "purchase" and ts < end_ms for ts, b in out)
        rage = any(ts < end_ms for ts in rage_at)
        events = []
        for ts, body in out:
            if ts >= end_ms:
                continue
            body["ts"] = ts
            body["event_id"] = self._eid()
            events.append(SimEvent(site.site_id, site.hostname, ts, body, v.headers, v.key, session_key,
                                   False, buyer, rage))
        return events

    def _browse_path(self, kind: str, interest: float) -> list[tuple[str, Product | None]]:
        rng = self.rng
        table = self._research if rng.random() < interest else self._browse
        path = [(kind, None)]
        while len(path) < 15:
            nxt = self._pick(table[kind])
            if nxt == "exit":
                break
            kind = nxt
            path.append((kind, None))
        return path

    def _buyer_path(self, kind: str) -> list[tuple[str, Product | None]]:
        rng = self.rng
        path: list[tuple[str, Product | None]] = [(kind, None)]
        for _ in range(rng.randint(0, 2)):
            path.append((rng.choice(("category", "product", "pricing", "home")), None))
        for _ in range(rng.randint(1, 3)):
            path.append(("product", rng.choice(self.site.products)))
            if rng.random() < 0.35:
                path.append(("pricing", None))
        if path[-1][0] != "product":
            path.append(("product", rng.choice(self.site.products)))
        path.append(("cart", None))
        path.append(("checkout", None))
        path.append(("complete", None))
        return path

    def _page_activity(self, out: list, base: dict, url: str, kind: str, t: int, dwell: int, v: Visitor) -> int | None:
        """Scrolls, clicks, pings and the exit engagement of one page; returns the time of the
        third click of a rage burst, if the page had one."""
        rng = self.rng
        mobile = v.device_type != "desktop"
        # scrolling: how far the visitor gets grows with the time spent
        reach = min(100.0, 100 * (1 - math.exp(-dwell / (25_000 if kind not in ("blog", "docs") else 60_000))))
        reach *= 0.6 + 0.4 * rng.random()
        depth = 0
        for threshold in (25, 50, 75, 100):
            if reach >= threshold:
                depth = threshold
                out.append((t + int(dwell * threshold / 110 * (0.7 + 0.3 * rng.random())),
                            {**base, "type": "scroll", "url": url, "scroll_depth": threshold}))
        # clicks
        vw, vh = (int(x) for x in (v.viewport or "1280x720").split("x"))
        n_clicks = min(6, int(rng.expovariate(1 / (1.2 if not mobile else 0.8))))
        targets = C.CLICK_TARGETS.get(kind, C.CLICK_TARGETS["home"])
        for _ in range(n_clicks):
            tc = t + int(dwell * rng.random())
            dead = rng.random() < 0.07
            body = {**base, "type": "click", "url": url,
                    "target": rng.choice(C.DEAD_TARGETS) if dead else rng.choice(targets),
                    "x": rng.randint(0, vw), "y": rng.randint(0, vh)}
            if dead:
                body["props"] = {"dead": True}
            out.append((tc, body))
        third: int | None = None
        p_rage = 0.10 if kind in ("cart", "checkout") else 0.015
        if rng.random() < p_rage:
            target = rng.choice(targets)
            x0, y0 = rng.randint(20, max(21, vw - 20)), rng.randint(20, max(21, vh - 20))
            tc = t + int(dwell * (0.2 + 0.6 * rng.random()))
            for k in range(rng.randint(3, 7)):
                if k == 2:
                    third = tc
                out.append((tc, {**base, "type": "click", "url": url, "target": target,
                                 "x": x0 + rng.randint(-10, 10), "y": y0 + rng.randint(-10, 10),
                                 "props": {"dead": True}}))
                tc += rng.randint(70, 140)  # at most 7 clicks in < 1 s
        # engagement pings while the page is open, and one when it is left
        for k in range(1, min(4, dwell // PING_EVERY_MS) + 1):
            out.append((t + k * PING_EVERY_MS, {**base, "type": "engagement", "url": url,
                                                "time_on_page_ms": k * PING_EVERY_MS}))
        out.append((t + dwell, {**base, "type": "engagement", "url": url, "time_on_page_ms": dwell,
                                "scroll_depth": depth, "name": "page_hide"}))
        # the occasional custom event and error
        if kind == "blog" and rng.random() < 0.12:
            out.append((t + int(dwell * 0.4), {**base, "type": "custom", "url": url, "name": "video_play",
                                               "props": {"video": url.rsplit("/", 1)[-1], "autoplay": False}}))
        if rng.random() < 0.01:
            out.append((t + int(dwell * rng.random()), {**base, "type": "error", "url": url,
                                                        "name": rng.choice(C.ERROR_NAMES),
                                                        "props": {"message": "Cannot read properties of undefined",
                                                                  "source": "app.js", "line": rng.randint(1, 4000)}}))
        return third

    # -- bot sessions -----------------------------------------------------------------------------------
    def _bot_session(self, v: Visitor, index: int, start: int, pages: int) -> list[SimEvent]:
        rng, site = self.rng, self.site
        session_key = f"{v.key}:s{index}"
        interval = v.bot_interval_ms
        base: dict[str, Any] = {}
        if v.screen:
            base["screen"] = v.screen
            base["viewport"] = v.viewport
        if v.language:
            base["language"] = v.language
            base["timezone"] = v.timezone
        if v.kind == "stealth":
            base["visitor_id"] = f"{rng.getrandbits(128):032x}"  # a fresh profile every run
            base["props"] = {"webdriver": True}
        kinds = ("home", "category", "product", "product", "product", "blog", "docs", "pricing")
        out: list[tuple[int, dict[str, Any]]] = []
        t = start
        for i in range(pages):
            kind = kinds[i % len(kinds)] if v.kind == "crawler" else rng.choice(kinds)
            p, title = self._page_url(kind)
            url = site.origin + p
            out.append((t, {**base, "type": "page_view", "url": url, "title": title}))
            if v.kind in ("headless", "stealth"):
                vw, vh = (int(x) for x in v.viewport.split("x"))
                out.append((t + interval // 2, {**base, "type": "click", "url": url,
                                                "target": C.CLICK_TARGETS[kind][0], "x": vw // 2, "y": vh // 3}))
            t += interval
        events = []
        for ts, body in out:
            if ts >= self.end_ms:
                continue
            body["ts"] = ts
            body["event_id"] = self._eid()
            events.append(SimEvent(site.site_id, site.hostname, ts, body, v.headers, v.key, session_key,
                                   True, False, False))
        return events


def generate(cfg: SimConfig) -> Iterator[SimEvent]:
    """All simulated events of all sites, in send order (ties: site order)."""
    cfg.validate()
    end_ms = cfg.resolved_end_ms()
    start_ms = end_ms - cfg.days * DAY_MS
    sims = [_SiteSim(cfg, i, sid, host, start_ms, end_ms) for i, (sid, host) in enumerate(cfg.site_list())]
    if len(sims) == 1:
        yield from sims[0].events()
        return
    yield from heapq.merge(*(s.events() for s in sims), key=lambda e: e.send_ms)


def timeline(cfg: SimConfig) -> tuple[int, int]:
    """(start_ms, end_ms) of the simulated period."""
    end_ms = cfg.resolved_end_ms()
    return end_ms - cfg.days * DAY_MS, end_ms
