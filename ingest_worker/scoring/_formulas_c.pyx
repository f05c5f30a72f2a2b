# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, infer_types=False
# cython: initializedcheck=False, cpow=False, embedsignature=False
"""The 16 score formulas of ``formulas.build`` in typed Cython: the same floats to the bit.

``Kernel(params, fallback)`` takes the constants and tables ``build()`` prepared (its
locals, by name) and the Python ``compute`` closure they belong to.  Calling the kernel
gives what that closure gives -- the same 16 doubles, in the same key order, and the same
reasons -- because every step is the same IEEE operation on the same operands:

* C doubles with the expression trees of formulas.py, left to right (built with
  ``-O2 -ffp-contract=off``: no FMA contraction, no reassociation, no -ffast-math);
* exp / log1p / sqrt of the C library -- the functions CPython's math module calls -- and
  the math module's error rules (a result it would reject makes the call fall back);
* counts read as exact ints of at most 2**53 (exactly representable: Python's int → float
  conversions and int / int true divisions then give what C gives), int arithmetic on
  64-bit ints, int-vs-float comparisons only where the int is exact as a double.

Anything outside that domain -- a count that is not an exact int or is beyond 2**53 (an
OverflowError of the conversion included), a float slot of another type, a negative table
index, a division by zero, a math domain or range error, an exception of any kind -- makes
the call return the Python closure's answer (or raise its exception) instead: the kernel
never answers differently from formulas.py, it only answers faster.  tests/
test_scoring_compiled.py checks it against ``build(W, tabulate=False)`` bit for bit.

Do not edit one of formulas.py / this file without the other: the module embeds a hash of
both (see _source_hash.py), and formulas.py ignores a kernel built from other sources.
"""

from cpython.object cimport PyObject
from libc.math cimport exp, isfinite, isinf, isnan, log1p, sqrt

cdef extern from *:
    """
    #ifndef FORMULAS_SOURCE_HASH
    #define FORMULAS_SOURCE_HASH ""
    #endif
    """
    const char* FORMULAS_SOURCE_HASH

cdef extern from "Python.h":
    bint PyLong_CheckExact(object o) noexcept
    bint PyFloat_CheckExact(object o) noexcept
    bint PyDict_CheckExact(object o) noexcept
    double PyFloat_AS_DOUBLE(object o) noexcept
    long long PyLong_AsLongLongAndOverflow(object o, int* overflow) noexcept

from types import MemberDescriptorType

SOURCE_HASH = FORMULAS_SOURCE_HASH.decode("ascii")

cdef enum:
    TABLE = 64          # formulas.TABLE_SIZE (checked when a kernel is made)
    MAX_EVIDENCE = 16

cdef long long EXACT = 9007199254740992  # 2**53: ints up to this are exact as doubles
cdef double DAY_MS = 86400000.0

# reasons as a bit set, in the order compute() appends them
cdef enum:
    R_CRAWLER = 1
    R_AUTOMATION = 2
    R_EMPTY = 4
    R_WEBDRIVER = 8
    R_NO_SCREEN = 16
    R_REGULAR = 32
    R_FAST = 64

REASON_NAMES = ("crawler_ua", "automation_ua", "empty_ua", "webdriver", "no_screen", "regular_timing", "fast_timing")
cdef tuple REASONS = tuple([tuple([REASON_NAMES[b] for b in range(7) if m >> b & 1]) for m in range(128)])


cdef enum:
    F_PAGEVIEWS
    F_PRICING
    F_PRODUCT
    F_CART
    F_CHECKOUT
    F_ADD_TO_CART
    F_PURCHASES
    F_FORMS
    F_PREV_INTENT_VISITS
    F_CLICKS
    F_RAGE_CLICKS
    F_DEAD_CLICKS
    F_ERRORS
    F_BACK_FORTH
    F_RELOADS
    F_LAST_FUNNEL_MS
    F_FLAGS
    F_GAP_N
    F_FAST_GAPS
    F_SESSION_START_MS
    F_PREV_SESSION_END_MS
    F_PREV_PURCHASES
    F_SESSION_NUMBER
    F_EVENTS
    F_FIRST_MS
    F_PREV_PAGEVIEWS
    F_PAGE_START_MS
    F_PAGE_CLICKS
    F_PRICE_SIGNALS
    F_SOCIAL_PROOF
    F_CHANNEL_EVIDENCE
    F_ENGAGED_MS
    N_INT_FIELDS
    F_TOP_SUM = N_INT_FIELDS
    F_PAGE_TOP
    F_SCROLL_SUM
    F_PAGE_SCROLL
    F_GAP_MEAN
    F_GAP_M2
    N_NUM_FIELDS
    F_CHANNEL = N_NUM_FIELDS
    F_SECTIONS
    N_FIELDS

# The VisitorState slots run() reads, in the order of the F_* constants.
FIELDS = (
    "pageviews", "pricing", "product", "cart", "checkout", "add_to_cart", "purchases", "forms",
    "prev_intent_visits", "clicks", "rage_clicks", "dead_clicks", "errors", "back_forth", "reloads",
    "last_funnel_ms", "flags", "gap_n", "fast_gaps", "session_start_ms", "prev_session_end_ms",
    "prev_purchases", "session_number", "events", "first_ms", "prev_pageviews", "page_start_ms",
    "page_clicks", "price_signals", "social_proof", "channel_evidence", "engaged_ms", "top_sum",
    "page_top", "scroll_sum", "page_scroll", "gap_mean", "gap_m2", "channel", "sections",
)


cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    enum: T_OBJECT_EX

cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member


cdef inline object field(object s, bint direct, Py_ssize_t* offs, int i):
    """Slot ``FIELDS[i]`` of ``s``: read at its offset when ``s`` is exactly the VisitorState
    the offsets were taken from (as CPython's LOAD_ATTR_SLOT does), else by getattr."""
    cdef PyObject* p
    if direct:
        p = (<PyObject**>((<char*><PyObject*>s) + offs[i]))[0]
        if p is NULL:
            raise AttributeError(FIELDS[i])
        return <object>p
    return getattr(s, FIELDS[i])


cdef inline bint read_int(object o, long long* out) noexcept:
    """An exact int of at most 2**53 in magnitude (else 0: the call falls back)."""
    cdef int overflow = 0
    cdef long long v
    if not PyLong_CheckExact(o):
        return 0
    v = PyLong_AsLongLongAndOverflow(o, &overflow)
    if overflow or v > EXACT or v < -EXACT:
        return 0
    out[0] = v
    return 1


cdef inline bint read_num(object o, double* out) noexcept:
    """A float slot (top_sum, page_scroll, gap_mean, ...): an exact float, or an exact int
    of at most 2**53 (exact as a double, so int + int then float == float + float)."""
    cdef long long v
    if PyFloat_CheckExact(o):
        out[0] = PyFloat_AS_DOUBLE(o)
        return 1
    if read_int(o, &v):
        out[0] = <double>v
        return 1
    return 0


cdef inline double m_exp(double x, int* bad) noexcept:
    """math.exp: a finite x whose exp overflows is an OverflowError there."""
    cdef double r = exp(x)
    if (isnan(r) and not isnan(x)) or (isinf(r) and isfinite(x)):
        bad[0] = 1
    return r


cdef inline double m_log1p(double x, int* bad) noexcept:
    """math.log1p: x <= -1 is a ValueError there; ±0 is returned as is."""
    cdef double r
    if x == 0.0:
        return x
    r = log1p(x)
    if (isnan(r) and not isnan(x)) or (isinf(r) and isfinite(x)):
        bad[0] = 1
    return r


cdef inline double m_sqrt(double x, int* bad) noexcept:
    cdef double r = sqrt(x)
    if (isnan(r) and not isnan(x)) or (isinf(r) and isfinite(x)):
        bad[0] = 1
    return r


cdef inline double fdiv(double a, double b, int* bad) noexcept:
    """float / float: a zero divisor is a ZeroDivisionError in Python."""
    if b == 0.0:
        bad[0] = 1
        return 0.0
    return a / b


cdef inline bint gt_num_int(double d, long long i, int* bad) noexcept:
    """``d > i`` as Python compares a float with an int (exactly)."""
    if i > EXACT or i < -EXACT:
        bad[0] = 1
        return 0
    return d > <double>i


cdef inline double sigmoid(double z, int* bad) noexcept:
    if z >= 0:
        return 1.0 / (1.0 + m_exp(-z, bad))
    return 1.0 - 1.0 / (1.0 + m_exp(z, bad))


cdef inline bint fill(double* table, object values) except -1:
    cdef Py_ssize_t i
    if len(values) != TABLE:
        raise ValueError(f"a table of {len(values)} entries, the kernel has {TABLE}")
    for i in range(TABLE):
        if type(values[i]) is not float:
            raise TypeError("table entries must be floats")
        table[i] = values[i]
    return 1


cdef double weight(dict p, str name) except? -1.0:
    """A weight the formulas multiply or add: a float, as in weights_v1.json (an int
    weight would make Python's arithmetic exact-integer in places; such a document is
    scored by the Python formulas)."""
    v = p[name]
    if type(v) is not float:
        raise TypeError(f"weight {name} is {type(v).__name__}, the compiled formulas take floats")
    return v


cdef class Kernel:
    """``compute(state, ua_flags, now_ms)`` of formulas.build, compiled (see the module doc)."""

    cdef readonly bint tabulated, compiled
    cdef readonly object fallback
    cdef readonly unsigned long long fallbacks  # calls the Python formulas answered
    cdef long long crawler, automation, empty, flag_webdriver, flag_no_screen
    cdef double i_pricing, i_product, i_cart, i_checkout, i_atc, i_forms, i_purch, i_hist
    cdef double e_time, e_time_scale, e_scroll, e_pv, e_pv_scale, e_clicks, e_clicks_scale
    cdef double f_rage, f_dead, f_err, f_bf, f_reload
    cdef double t_pricing, t_product, t_cart, t_checkout, t_atc, t_hist, t_floor, t_recency
    cdef double c_bias, c_days, c_sessions, c_eng, c_frus, c_buyer, c_intent, c_days_0
    cdef double a_depth, v_other, v_scale, l_sessions, l_purch, l_age, l_pv
    cdef double p_bias, p_pricing, p_product, p_cart, p_checkout, p_atc, p_eng, p_pv, p_ret, p_buyer
    cdef double p_minutes, p_hist, p_frus, p_bot, p_channel
    cdef double q_eng, q_depth, q_depth_scale, q_intent, q_nb, q_pen
    cdef double at_dwell, at_scale, at_scroll, at_clicks, at_cscale
    cdef double n_bf, n_reload, n_dead, n_err, n_scale, n_direct, n_progress, n_pscale
    cdef double ps_pricing, ps_signals, sp_social, sp_channel
    cdef double b_bias, b_crawler, b_auto, b_webdriver, b_noscreen, b_empty, b_regular, b_cv
    cdef double b_min_gaps, b_fast, b_floor, b_reason, bot_bias, ca_progress
    cdef double ca_evidence[MAX_EVIDENCE]
    cdef Py_ssize_t n_evidence
    cdef dict prior
    cdef frozenset social_channels
    cdef tuple solid
    cdef double t_e_pv[TABLE]
    cdef double t_e_clicks[TABLE]
    cdef double t_c_sessions[TABLE]
    cdef double t_a_depth[TABLE]
    cdef double t_p_pricing[TABLE]
    cdef double t_p_product[TABLE]
    cdef double t_p_pv[TABLE]
    cdef double t_p_hist[TABLE]
    cdef double t_q_depth[TABLE]
    cdef double t_at_clicks[TABLE]
    cdef Py_ssize_t offs[N_FIELDS]
    cdef readonly object state_type  # the class whose slot offsets offs holds (None: getattr only)

    def __init__(self, dict p, fallback):
        """``p``: build()'s constants and tables by name; ``fallback``: its Python compute."""
        if p["table_size"] != TABLE or not p["tabulate"]:
            raise ValueError("the kernel is the tabulated compute with 64-entry tables")
        self.fallback = fallback
        self.tabulated = True
        self.compiled = True
        self.crawler, self.automation, self.empty = p["CRAWLER"], p["AUTOMATION"], p["EMPTY"]
        self.flag_webdriver, self.flag_no_screen = p["FLAG_WEBDRIVER"], p["FLAG_NO_SCREEN"]
        self.i_pricing, self.i_product = weight(p, "i_pricing"), weight(p, "i_product")
        self.i_cart, self.i_checkout = weight(p, "i_cart"), weight(p, "i_checkout")
        self.i_atc, self.i_forms = weight(p, "i_atc"), weight(p, "i_forms")
        self.i_purch, self.i_hist = weight(p, "i_purch"), weight(p, "i_hist")
        self.e_time, self.e_time_scale, self.e_scroll = weight(p, "e_time"), weight(p, "e_time_scale"), weight(p, "e_scroll")
        self.e_pv, self.e_pv_scale = weight(p, "e_pv"), weight(p, "e_pv_scale")
        self.e_clicks, self.e_clicks_scale = weight(p, "e_clicks"), weight(p, "e_clicks_scale")
        self.f_rage, self.f_dead, self.f_err = weight(p, "f_rage"), weight(p, "f_dead"), weight(p, "f_err")
        self.f_bf, self.f_reload = weight(p, "f_bf"), weight(p, "f_reload")
        self.t_pricing, self.t_product = weight(p, "t_pricing"), weight(p, "t_product")
        self.t_cart, self.t_checkout = weight(p, "t_cart"), weight(p, "t_checkout")
        self.t_atc, self.t_hist = weight(p, "t_atc"), weight(p, "t_hist")
        self.t_floor, self.t_recency = weight(p, "t_floor"), weight(p, "t_recency")
        self.c_bias, self.c_days, self.c_sessions = weight(p, "c_bias"), weight(p, "c_days"), weight(p, "c_sessions")
        self.c_eng, self.c_frus = weight(p, "c_eng"), weight(p, "c_frus")
        self.c_buyer, self.c_intent, self.c_days_0 = weight(p, "c_buyer"), weight(p, "c_intent"), weight(p, "c_days_0")
        self.a_depth, self.v_other, self.v_scale = weight(p, "a_depth"), weight(p, "v_other"), weight(p, "v_scale")
        self.l_sessions, self.l_purch = weight(p, "l_sessions"), weight(p, "l_purch")
        self.l_age, self.l_pv = weight(p, "l_age"), weight(p, "l_pv")
        self.p_bias, self.p_pricing, self.p_product = weight(p, "p_bias"), weight(p, "p_pricing"), weight(p, "p_product")
        self.p_cart, self.p_checkout, self.p_atc = weight(p, "p_cart"), weight(p, "p_checkout"), weight(p, "p_atc")
        self.p_eng, self.p_pv, self.p_ret = weight(p, "p_eng"), weight(p, "p_pv"), weight(p, "p_ret")
        self.p_buyer, self.p_minutes, self.p_hist = weight(p, "p_buyer"), weight(p, "p_minutes"), weight(p, "p_hist")
        self.p_frus, self.p_bot, self.p_channel = weight(p, "p_frus"), weight(p, "p_bot"), weight(p, "p_channel")
        self.q_eng, self.q_depth, self.q_depth_scale = weight(p, "q_eng"), weight(p, "q_depth"), weight(p, "q_depth_scale")
        self.q_intent, self.q_nb, self.q_pen = weight(p, "q_intent"), weight(p, "q_nb"), weight(p, "q_pen")
        self.at_dwell, self.at_scale, self.at_scroll = weight(p, "at_dwell"), weight(p, "at_scale"), weight(p, "at_scroll")
        self.at_clicks, self.at_cscale = weight(p, "at_clicks"), weight(p, "at_cscale")
        self.n_bf, self.n_reload, self.n_dead = weight(p, "n_bf"), weight(p, "n_reload"), weight(p, "n_dead")
        self.n_err, self.n_scale, self.n_direct = weight(p, "n_err"), weight(p, "n_scale"), weight(p, "n_direct")
        self.n_progress, self.n_pscale = weight(p, "n_progress"), weight(p, "n_pscale")
        self.ps_pricing, self.ps_signals = weight(p, "ps_pricing"), weight(p, "ps_signals")
        self.sp_social, self.sp_channel = weight(p, "sp_social"), weight(p, "sp_channel")
        self.b_bias, self.b_crawler, self.b_auto = weight(p, "b_bias"), weight(p, "b_crawler"), weight(p, "b_auto")
        self.b_webdriver, self.b_noscreen = weight(p, "b_webdriver"), weight(p, "b_noscreen")
        self.b_empty, self.b_regular, self.b_cv = weight(p, "b_empty"), weight(p, "b_regular"), weight(p, "b_cv")
        self.b_fast, self.b_floor, self.b_reason = weight(p, "b_fast"), weight(p, "b_floor"), weight(p, "b_reason")
        self.bot_bias, self.ca_progress = weight(p, "bot_bias"), weight(p, "ca_progress")
        # compared with an int count only: an int or a float, exact as a double
        g = p["b_min_gaps"]
        if type(g) is int and -EXACT <= g <= EXACT or type(g) is float:
            self.b_min_gaps = g
        else:
            raise TypeError("regular_min_gaps must be an int (at most 2**53) or a float")
        ev = p["ca_evidence"]
        if not 0 < len(ev) <= MAX_EVIDENCE:
            raise ValueError("channel_attribution.evidence: 1 to 16 entries")
        self.n_evidence = len(ev)
        for i in range(self.n_evidence):
            if type(ev[i]) is not float:
                raise TypeError("channel_attribution.evidence entries must be floats")
            self.ca_evidence[i] = ev[i]
        prior = p["prior"]
        if not all(type(v) is float for v in prior.values()):
            raise TypeError("channel_prior values must be floats")
        self.prior = dict(prior)
        self.social_channels = frozenset(p["SOCIAL_CHANNELS"])
        ua_solid = p["UA_SOLID"]
        self.solid = tuple([tuple([r for r in reasons if r in ua_solid]) for reasons in REASONS])
        fill(self.t_e_pv, p["t_e_pv"])
        fill(self.t_e_clicks, p["t_e_clicks"])
        fill(self.t_c_sessions, p["t_c_sessions"])
        fill(self.t_a_depth, p["t_a_depth"])
        fill(self.t_p_pricing, p["t_p_pricing"])
        fill(self.t_p_product, p["t_p_product"])
        fill(self.t_p_pv, p["t_p_pv"])
        fill(self.t_p_hist, p["t_p_hist"])
        fill(self.t_q_depth, p["t_q_depth"])
        fill(self.t_at_clicks, p["t_at_clicks"])
        self.state_type = None
        st = p["VisitorState"]
        for i in range(N_FIELDS):
            desc = st.__dict__.get(FIELDS[i])
            if type(desc) is not MemberDescriptorType or (<PyMemberDescrObject*><PyObject*>desc).d_member.type != T_OBJECT_EX:
                break  # not a plain __slots__ slot: read by getattr
            self.offs[i] = (<PyMemberDescrObject*><PyObject*>desc).d_member.offset
        else:
            self.state_type = st

    def __call__(self, s, ua, now_ms):
        try:
            r = self.run(s, ua, now_ms)
        except Exception:
            r = None
        if r is None:  # outside the kernel's domain: the Python formulas answer (or raise)
            self.fallbacks += 1
            return self.fallback(s, ua, now_ms)
        return r

    cdef object run(self, object s, object ua_obj, object now_obj):
        cdef int bad = 0
        cdef long long ua, now, pv, pricing, product, cart, checkout, atc, purchases, forms, hist
        cdef long long clicks, rage, dead, errors, back_forth, reloads, calm, last_funnel, since
        cdef long long flags, n, fast_gaps, session_start, prev_end, prev_purchases, session_number, k
        cdef long long events, first_ms, prev_pageviews, page_start, page_clicks, price_signals, social_proof
        cdef long long channel_evidence, s_engaged, top, total, v, age, dwell_i, steps, progress
        cdef double top_sum, page_top, scroll_sum, page_scroll, gap_mean, gap_m2
        cdef double z, intent, engaged_ms, avg_scroll, engagement, frustration, stage, urgency
        cdef double purchase_timing, cv, share, bot, days_away, buyer, churn, affinity, minutes
        cdef double velocity, loyalty, conversion, quality, dwell, scroll, attention, waste, nav
        cdef double price, social, attribution, term
        cdef int reasons = 0
        cdef bint first
        cdef bint direct = type(s) is self.state_type
        cdef long long iv[N_INT_FIELDS]
        cdef double dv[N_NUM_FIELDS - N_INT_FIELDS]
        cdef int i

        if not (read_int(ua_obj, &ua) and read_int(now_obj, &now)):
            return None
        for i in range(N_INT_FIELDS):  # FIELDS: the int slots, then the float slots
            if not read_int(field(s, direct, self.offs, i), &iv[i]):
                return None
        for i in range(N_INT_FIELDS, N_NUM_FIELDS):
            if not read_num(field(s, direct, self.offs, i), &dv[i - N_INT_FIELDS]):
                return None
        pv = iv[F_PAGEVIEWS]
        pricing = iv[F_PRICING]
        product = iv[F_PRODUCT]
        cart = iv[F_CART]
        checkout = iv[F_CHECKOUT]
        atc = iv[F_ADD_TO_CART]
        purchases = iv[F_PURCHASES]
        forms = iv[F_FORMS]
        hist = iv[F_PREV_INTENT_VISITS]
        clicks = iv[F_CLICKS]
        rage = iv[F_RAGE_CLICKS]
        dead = iv[F_DEAD_CLICKS]
        errors = iv[F_ERRORS]
        back_forth = iv[F_BACK_FORTH]
        reloads = iv[F_RELOADS]
        last_funnel = iv[F_LAST_FUNNEL_MS]
        flags = iv[F_FLAGS]
        n = iv[F_GAP_N]
        fast_gaps = iv[F_FAST_GAPS]
        session_start = iv[F_SESSION_START_MS]
        prev_end = iv[F_PREV_SESSION_END_MS]
        prev_purchases = iv[F_PREV_PURCHASES]
        session_number = iv[F_SESSION_NUMBER]
        events = iv[F_EVENTS]
        first_ms = iv[F_FIRST_MS]
        prev_pageviews = iv[F_PREV_PAGEVIEWS]
        page_start = iv[F_PAGE_START_MS]
        page_clicks = iv[F_PAGE_CLICKS]
        price_signals = iv[F_PRICE_SIGNALS]
        social_proof = iv[F_SOCIAL_PROOF]
        channel_evidence = iv[F_CHANNEL_EVIDENCE]
        s_engaged = iv[F_ENGAGED_MS]
        top_sum = dv[F_TOP_SUM - N_INT_FIELDS]
        page_top = dv[F_PAGE_TOP - N_INT_FIELDS]
        scroll_sum = dv[F_SCROLL_SUM - N_INT_FIELDS]
        page_scroll = dv[F_PAGE_SCROLL - N_INT_FIELDS]
        gap_mean = dv[F_GAP_MEAN - N_INT_FIELDS]
        gap_m2 = dv[F_GAP_M2 - N_INT_FIELDS]
        # Python indexes the tables with these when they are below 64: a negative one would
        # wrap around there; the Python formulas answer for such a state.
        if pv < 0 or pricing < 0 or product < 0 or hist < 0 or page_clicks < 0:
            return None
        if not 0 <= channel_evidence < self.n_evidence:
            return None
        channel = field(s, direct, self.offs, F_CHANNEL)

        # intent
        z = (self.i_pricing * pricing + self.i_product * product + self.i_cart * cart + self.i_checkout * checkout
             + self.i_atc * atc + self.i_forms * forms + self.i_purch * purchases + self.i_hist * hist)
        intent = 1.0 - m_exp(-z, &bad) if z > 0.0 else 0.0
        # engagement
        engaged_ms = top_sum + page_top
        if <double>s_engaged > engaged_ms:
            engaged_ms = <double>s_engaged
        if pv:
            avg_scroll = fdiv(scroll_sum + page_scroll, pv * 100.0, &bad)
        else:
            avg_scroll = page_scroll / 100.0
        calm = clicks - rage
        if calm < 0:
            calm = 0
        engagement = (self.e_time * (1.0 - m_exp(fdiv(-engaged_ms, self.e_time_scale, &bad), &bad))
                      + self.e_scroll * (avg_scroll if avg_scroll < 1.0 else 1.0)
                      + (self.t_e_pv[pv] if pv < TABLE
                         else self.e_pv * (1.0 - m_exp(fdiv(<double>(-pv), self.e_pv_scale, &bad), &bad)))
                      + (self.t_e_clicks[calm] if calm < TABLE
                         else self.e_clicks * (1.0 - m_exp(fdiv(<double>(-calm), self.e_clicks_scale, &bad), &bad))))
        # frustration
        z = (self.f_rage * rage + self.f_dead * dead + self.f_err * errors + self.f_bf * back_forth
             + self.f_reload * reloads)
        frustration = 1.0 - m_exp(-z, &bad) if z > 0.0 else 0.0
        # purchase timing
        z = (self.t_pricing * pricing + self.t_product * product + self.t_cart * cart + self.t_checkout * checkout
             + self.t_atc * atc + self.t_hist * hist)
        stage = 1.0 - m_exp(-z, &bad) if z > 0.0 else 0.0
        if stage == 0.0:
            urgency = 0.0
        elif last_funnel:
            since = now - last_funnel
            urgency = self.t_floor + (1.0 - self.t_floor) * m_exp(
                fdiv(<double>(-(since if since > 0 else 0)), self.t_recency, &bad), &bad)
        else:
            urgency = self.t_floor
        purchase_timing = stage * urgency
        # bot probability
        z = self.b_bias
        if ua:
            if ua & self.crawler:
                z += self.b_crawler
                reasons |= R_CRAWLER
            if ua & self.automation:
                z += self.b_auto
                reasons |= R_AUTOMATION
            if ua & self.empty:
                z += self.b_empty
                reasons |= R_EMPTY
        if flags:
            if flags & self.flag_webdriver:
                z += self.b_webdriver
                reasons |= R_WEBDRIVER
            if flags & self.flag_no_screen:
                z += self.b_noscreen
                reasons |= R_NO_SCREEN
        if <double>n >= self.b_min_gaps and gap_mean > 0:
            cv = fdiv(m_sqrt(fdiv(gap_m2, <double>(n - 1), &bad), &bad), gap_mean, &bad)
            if cv < self.b_cv:
                z += self.b_regular * (1.0 - fdiv(cv, self.b_cv, &bad))
                reasons |= R_REGULAR
        if n >= 3 and fast_gaps:
            share = <double>fast_gaps / <double>n  # int / int, both exact as doubles
            z += self.b_fast * share
            if share >= 0.5:
                reasons |= R_FAST
        if z == self.b_bias:  # no bot evidence (the usual event)
            bot = self.bot_bias
        else:
            bot = sigmoid(z, &bad)
        if ua & self.crawler and bot < self.b_floor:
            bot = self.b_floor
        # churn risk
        days_away = <double>(session_start - prev_end) / DAY_MS if prev_end else 0.0
        buyer = 1.0 if (prev_purchases or purchases) else 0.0
        k = session_number - 1
        z = (self.c_bias + (self.c_days * m_log1p(days_away, &bad) if days_away > 0 else self.c_days_0)
             + (self.t_c_sessions[k] if 0 <= k < TABLE else self.c_sessions * m_log1p(<double>k, &bad))
             + self.c_eng * engagement + self.c_frus * frustration + self.c_buyer * buyer + self.c_intent * intent)
        churn = sigmoid(z, &bad)
        # content affinity
        sections = field(s, direct, self.offs, F_SECTIONS)
        if not PyDict_CheckExact(sections):
            return None
        if sections:
            first = True
            top = total = 0
            for value in (<dict>sections).values():
                if not read_int(value, &v):
                    return None
                if first or v > top:
                    top = v
                    first = False
                total += v
                if total > EXACT or total < -EXACT:
                    return None
            if total == 0:
                return None
            affinity = <double>top / <double>total * (
                self.t_a_depth[top] if 0 <= top < TABLE
                else 1.0 - m_exp(fdiv(<double>(-top), self.a_depth, &bad), &bad))
        else:
            affinity = 0.0
        # velocity
        minutes = <double>(now - session_start) / 60000.0
        if minutes < 1.0:
            minutes = 1.0
        velocity = 1.0 - m_exp(fdiv(fdiv(-(pv + self.v_other * <double>(events - pv)), minutes, &bad),
                                    self.v_scale, &bad), &bad)
        # loyalty
        age = now - first_ms
        loyalty = 1.0 - m_exp(-(self.l_sessions * <double>(session_number - 1)
                                + self.l_purch * <double>(prev_purchases + purchases)
                                + self.l_age * m_log1p(<double>age / DAY_MS if age > 0 else 0.0, &bad)
                                + self.l_pv * prev_pageviews), &bad)
        # conversion probability
        prior = self.prior.get(channel, 0.0)
        z = (self.p_bias + (self.t_p_pricing[pricing] if pricing < TABLE else self.p_pricing * m_log1p(<double>pricing, &bad))
             + (self.t_p_product[product] if product < TABLE else self.p_product * m_log1p(<double>product, &bad))
             + self.p_cart * <double>(cart if cart < 3 else 3) + self.p_checkout * <double>(checkout if checkout < 3 else 3)
             + self.p_atc * <double>(atc if atc < 3 else 3) + self.p_eng * engagement
             + (self.t_p_pv[pv] if pv < TABLE else self.p_pv * m_log1p(<double>pv, &bad))
             + self.p_minutes * m_log1p(engaged_ms / 60000.0, &bad)
             + (self.t_p_hist[hist] if hist < TABLE else self.p_hist * m_log1p(<double>hist, &bad))
             + (self.p_ret if session_number > 1 else 0.0) + self.p_buyer * buyer + self.p_frus * frustration
             + self.p_bot * bot + self.p_channel * <double>prior)
        conversion = sigmoid(z, &bad)
        # session quality
        quality = ((self.q_eng * engagement
                    + (self.t_q_depth[pv] if pv < TABLE
                       else self.q_depth * (1.0 - m_exp(fdiv(<double>(-pv), self.q_depth_scale, &bad), &bad)))
                    + self.q_intent * intent
                    + (self.q_nb if events > 1 else 0.0)) * (1.0 - self.q_pen * frustration) * (1.0 - bot))
        # attention (the current page)
        dwell_i = now - page_start
        if gt_num_int(page_top, dwell_i, &bad):
            dwell = page_top
        else:
            dwell = <double>dwell_i
        scroll = page_scroll / 100.0
        attention = (self.at_dwell * (1.0 - m_exp(fdiv(-(dwell if dwell > 0 else 0.0), self.at_scale, &bad), &bad))
                     + self.at_scroll * (scroll if scroll < 1.0 else 1.0)
                     + (self.t_at_clicks[page_clicks] if page_clicks < TABLE
                        else self.at_clicks * (1.0 - m_exp(fdiv(<double>(-page_clicks), self.at_cscale, &bad), &bad))))
        # navigation efficiency
        steps = pv if pv > 1 else 1
        waste = (self.n_bf * back_forth + self.n_reload * reloads + self.n_dead * dead + self.n_err * errors) / <double>steps
        progress = (product > 0) + (pricing > 0) + (cart > 0 or atc > 0) + (checkout > 0) + (purchases > 0)
        nav = ((self.n_direct * m_exp(-self.n_scale * waste, &bad) if waste != 0.0 else self.n_direct)
               + (self.n_progress * (1.0 - m_exp(-self.n_pscale * progress / <double>steps, &bad)) if progress else 0.0))
        # price sensitivity, social proof
        z = self.ps_pricing * pricing + self.ps_signals * price_signals
        price = 1.0 - m_exp(-z, &bad) if z > 0.0 else 0.0
        z = self.sp_social * social_proof + (self.sp_channel if channel in self.social_channels else 0.0)
        social = 1.0 - m_exp(-z, &bad) if z > 0.0 else 0.0
        # channel attribution
        attribution = self.ca_evidence[channel_evidence] * ((1.0 - self.ca_progress) + self.ca_progress * intent)

        if bad:
            return None
        if bot < self.b_reason and reasons:
            reason_tuple = self.solid[reasons]
        else:
            reason_tuple = REASONS[reasons]
        return {
            "intent": 100.0 * intent,
            "engagement": 100.0 * engagement,
            "frustration": 100.0 * frustration,
            "purchase_timing": 100.0 * purchase_timing,
            "churn_risk": 100.0 * churn,
            "content_affinity": 100.0 * affinity,
            "velocity": 100.0 * velocity,
            "loyalty": 100.0 * loyalty,
            "conversion_prob": 100.0 * conversion,
            "session_quality": 100.0 * quality,
            "attention": 100.0 * attention,
            "nav_efficiency": 100.0 * nav,
            "price_sensitivity": 100.0 * price,
            "social_proof": 100.0 * social,
            "bot_probability": 100.0 * bot,
            "channel_attribution": 100.0 * attribution,
        }, reason_tuple
