"""The static material the simulator draws from: places, devices and user agents, bots,
traffic sources, site maps.  Plain data, no logic beyond small helpers."""

from __future__ import annotations

# --- places: (country, region, city, lat, lon, language, timezone, weight, ip first octets) ----------
PLACES: tuple[tuple[str, str, str, float, float, str, str, float, tuple[int, int]], ...] = (
    ("US", "California", "San Francisco", 37.7749, -122.4194, "en-US", "America/Los_Angeles", 9, (104, 28)),
    ("US", "New York", "New York", 40.7128, -74.006, "en-US", "America/New_York", 9, (68, 172)),
    ("US", "Texas", "Austin", 30.2672, -97.7431, "en-US", "America/Chicago", 5, (70, 112)),
    ("US", "Washington", "Seattle", 47.6062, -122.3321, "en-US", "America/Los_Angeles", 4, (73, 53)),
    ("US", "Illinois", "Chicago", 41.8781, -87.6298, "en-US", "America/Chicago", 4, (98, 215)),
    ("CA", "Ontario", "Toronto", 43.6532, -79.3832, "en-CA", "America/Toronto", 4, (99, 230)),
    ("GB", "England", "London", 51.5074, -0.1278, "en-GB", "Europe/London", 8, (81, 2)),
    ("GB", "Scotland", "Edinburgh", 55.9533, -3.1883, "en-GB", "Europe/London", 2, (86, 131)),
    ("DE", "Berlin", "Berlin", 52.52, 13.405, "de-DE", "Europe/Berlin", 5, (91, 64)),
    ("DE", "Bavaria", "München", 48.1351, 11.582, "de-DE", "Europe/Berlin", 4, (88, 217)),
    ("FR", "Île-de-France", "Paris", 48.8566, 2.3522, "fr-FR", "Europe/Paris", 6, (90, 84)),
    ("NL", "North Holland", "Amsterdam", 52.3676, 4.9041, "nl-NL", "Europe/Amsterdam", 3, (145, 53)),
    ("ES", "Madrid", "Madrid", 40.4168, -3.7038, "es-ES", "Europe/Madrid", 3, (83, 56)),
    ("IT", "Lombardy", "Milan", 45.4642, 9.19, "it-IT", "Europe/Rome", 3, (93, 44)),
    ("SE", "Stockholm County", "Stockholm", 59.3293, 18.0686, "sv-SE", "Europe/Stockholm", 2, (83, 250)),
    ("PL", "Mazovia", "Warsaw", 52.2297, 21.0122, "pl-PL", "Europe/Warsaw", 2, (89, 64)),
    ("BR", "São Paulo", "São Paulo", -23.5505, -46.6333, "pt-BR", "America/Sao_Paulo", 4, (177, 32)),
    ("MX", "Mexico City", "Mexico City", 19.4326, -99.1332, "es-MX", "America/Mexico_City", 2, (187, 189)),
    ("IN", "Karnataka", "Bengaluru", 12.9716, 77.5946, "en-IN", "Asia/Kolkata", 5, (49, 204)),
    ("JP", "Tokyo", "Tokyo", 35.6762, 139.6503, "ja-JP", "Asia/Tokyo", 4, (126, 236)),
    ("SG", "Singapore", "Singapore", 1.3521, 103.8198, "en-SG", "Asia/Singapore", 2, (116, 86)),
    ("AU", "New South Wales", "Sydney", -33.8688, 151.2093, "en-AU", "Australia/Sydney", 3, (101, 160)),
)
# data centres bots come from
BOT_PLACES = (
    ("US", "Virginia", "Ashburn", 39.0438, -77.4874, "en-US", "America/New_York", 5, (34, 201)),
    ("US", "California", "Mountain View", 37.3861, -122.0839, "en-US", "America/Los_Angeles", 5, (66, 249)),
    ("DE", "Hesse", "Frankfurt am Main", 50.1109, 8.6821, "en-US", "Europe/Berlin", 2, (138, 201)),
    ("SG", "Singapore", "Singapore", 1.3521, 103.8198, "en-US", "Asia/Singapore", 1, (139, 59)),
)

# --- devices ---------------------------------------------------------------------------------------
# (device_type, browser, os, weight, user-agent template; {v} = major version, {m} = minor)
DESKTOP_AGENTS = (
    ("desktop", "Chrome", "Windows", 30,
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"),
    ("desktop", "Chrome", "Mac OS X", 14,
     "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"),
    ("desktop", "Safari", "Mac OS X", 10,
     "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Safari/605.1.15"),
    ("desktop", "Edge", "Windows", 9,
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0"),
    ("desktop", "Firefox", "Windows", 6,
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"),
    ("desktop", "Firefox", "Linux", 2,
     "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"),
    ("desktop", "Chrome", "Linux", 2,
     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"),
)
MOBILE_AGENTS = (
    ("mobile", "Mobile Safari", "iOS", 22,
     "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Mobile/15E148 Safari/604.1"),
    ("mobile", "Chrome Mobile", "Android", 18,
     "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36"),
    ("mobile", "Samsung Internet", "Android", 6,
     "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36"),
    ("mobile", "Chrome Mobile iOS", "iOS", 4,
     "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/{v}.0.0.0 Mobile/15E148 Safari/604.1"),
)
TABLET_AGENTS = (
    ("tablet", "Mobile Safari", "iOS", 6,
     "Mozilla/5.0 (iPad; CPU OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Mobile/15E148 Safari/604.1"),
    ("tablet", "Chrome", "Android", 2,
     "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"),
)
SCREENS = {
    "desktop": (("1920x1080", 35), ("1366x768", 12), ("1536x864", 10), ("1440x900", 9), ("2560x1440", 8),
                ("1280x720", 5), ("1680x1050", 4), ("3840x2160", 3)),
    "mobile": (("390x844", 20), ("393x852", 14), ("412x915", 14), ("375x667", 8), ("360x800", 10),
               ("430x932", 8), ("414x896", 6)),
    "tablet": (("810x1080", 10), ("820x1180", 10), ("768x1024", 8), ("800x1280", 5)),
}
DEVICE_WEIGHTS = (("desktop", 55), ("mobile", 38), ("tablet", 7))

# --- bots ------------------------------------------------------------------------------------------
# kind: crawler (declares itself), headless (HeadlessChrome UA), stealth (normal UA but
# navigator.webdriver is true, reported by the SDK in props), script (HTTP library UA)
CRAWLER_AGENTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
)
HEADLESS_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/{v}.0.0.0 Safari/537.36"
)
SCRIPT_AGENTS = ("python-requests/2.32.3", "curl/8.5.0", "Go-http-client/1.1", "Scrapy/2.11.2 (+https://scrapy.org)")
BOT_KINDS = (("crawler", 50), ("headless", 25), ("stealth", 15), ("script", 10))

# --- traffic sources -------------------------------------------------------------------------------
SEARCH_REFERRERS = (("https://www.google.com/", 70), ("https://www.bing.com/", 12), ("https://duckduckgo.com/", 8),
                    ("https://search.yahoo.com/", 4), ("https://www.ecosia.org/", 3), ("https://yandex.ru/", 3))
SOCIAL_REFERRERS = (("https://www.facebook.com/", 30), ("https://t.co/", 18), ("https://www.linkedin.com/", 14),
                    ("https://www.reddit.com/", 14), ("https://www.instagram.com/", 12), ("https://l.facebook.com/", 6),
                    ("https://www.youtube.com/", 6))
REFERRAL_REFERRERS = ("https://news.ycombinator.com/", "https://www.producthunt.com/posts/launch",
                      "https://github.com/awesome/list", "https://medium.com/@writer/review", "https://dev.to/post")
# (channel, weight) for a visitor's first session
CHANNELS = (("direct", 26), ("organic_search", 28), ("paid_search", 12), ("organic_social", 9), ("paid_social", 7),
            ("email", 8), ("referral", 10))
CAMPAIGNS = ("spring_sale", "brand", "retargeting", "black_friday", "new_arrivals", "webinar_q3")
SEARCH_TERMS = ("analytics tool", "buy online", "best price", "pricing plans", "free trial", "reviews",
                "discount code", "how to setup")
EMAIL_CAMPAIGNS = ("newsletter_weekly", "welcome_series", "cart_reminder", "product_update")
AD_CONTENTS = ("banner_a", "banner_b", "text_ad", "video_15s", "carousel")

# --- site map --------------------------------------------------------------------------------------
CATEGORY_WORDS = ("shoes", "jackets", "bags", "watches", "lamps", "chairs", "tents", "headphones", "books", "plants")
PRODUCT_WORDS = ("classic", "pro", "ultra", "mini", "eco", "urban", "trail", "studio", "nordic", "vintage", "smart",
                 "deluxe")
BLOG_SLUGS = ("how-we-ship", "care-guide", "sustainability-report", "gift-ideas", "behind-the-design",
              "customer-stories", "size-guide", "what-is-new")
DOCS_SLUGS = ("getting-started", "faq", "returns", "shipping", "warranty", "api", "account", "payments")
FIRST_NAMES = ("anna", "ben", "carla", "david", "emma", "felix", "grace", "hugo", "ines", "jon", "kim", "lena",
               "marco", "nora", "omar", "paula", "quinn", "rosa", "sam", "tara")
LAST_NAMES = ("smith", "mueller", "garcia", "rossi", "dubois", "kowalski", "tanaka", "silva", "jensen", "khan")
MAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com", "company.example")
CURRENCIES = {"US": "USD", "CA": "CAD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "NL": "EUR", "ES": "EUR", "IT": "EUR",
              "SE": "SEK", "PL": "PLN", "BR": "BRL", "MX": "MXN", "IN": "INR", "JP": "JPY", "SG": "SGD", "AU": "AUD"}

# where a human goes next: page kind -> ((next kind, weight), ...); "exit" ends the session
BROWSE_NEXT = {
    "home": (("category", 35), ("blog", 12), ("docs", 6), ("pricing", 8), ("product", 12), ("exit", 27)),
    "category": (("product", 50), ("category", 12), ("home", 6), ("exit", 32)),
    "product": (("product", 22), ("category", 18), ("pricing", 6), ("cart", 4), ("home", 5), ("exit", 45)),
    "pricing": (("product", 15), ("docs", 15), ("home", 8), ("cart", 4), ("exit", 58)),
    "blog": (("blog", 25), ("product", 10), ("home", 10), ("exit", 55)),
    "docs": (("docs", 35), ("pricing", 8), ("home", 7), ("exit", 50)),
    "cart": (("product", 20), ("checkout", 8), ("exit", 72)),
    "checkout": (("cart", 20), ("exit", 80)),
}
# an interested visitor (a future buyer researching) leans to product, pricing and cart
RESEARCH_NEXT = {
    "home": (("category", 35), ("pricing", 25), ("product", 25), ("exit", 15)),
    "category": (("product", 70), ("category", 10), ("exit", 20)),
    "product": (("product", 35), ("pricing", 20), ("cart", 15), ("exit", 30)),
    "pricing": (("product", 35), ("cart", 15), ("docs", 10), ("exit", 40)),
    "blog": (("product", 40), ("pricing", 20), ("exit", 40)),
    "docs": (("pricing", 30), ("product", 20), ("exit", 50)),
    "cart": (("product", 30), ("checkout", 20), ("exit", 50)),
    "checkout": (("cart", 30), ("exit", 70)),
}
CLICK_TARGETS = {
    "home": ("a.hero-cta", "nav a[href='/pricing']", "a.category-tile", "button.newsletter-signup", "a.logo"),
    "category": ("a.product-card", "button.filter-toggle", "select.sort-order", "a.pagination-next"),
    "product": ("button.add-to-cart", "img.product-gallery", "button.size-option", "a.reviews-link", "button.wishlist"),
    "pricing": ("button.plan-pro", "button.plan-team", "a.faq-toggle", "button.billing-yearly"),
    "blog": ("a.read-more", "a.share-twitter", "a.related-post", "button.subscribe"),
    "docs": ("a.toc-link", "button.copy-code", "a.next-page", "input.search"),
    "cart": ("button.checkout", "button.remove-item", "input.coupon", "button.quantity-plus"),
    "checkout": ("button.pay-now", "input#email", "input#card-number", "button.apply-coupon"),
    "complete": ("a.continue-shopping", "a.order-status"),
}
DEAD_TARGETS = ("img.hero-banner", "div.price-tag", "span.badge-new", "p.product-description", "div.rating-stars")
ERROR_NAMES = ("TypeError", "ReferenceError", "NetworkError", "ChunkLoadError")
