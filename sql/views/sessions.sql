-- One row per session, over the decoded `events` view.
-- start/end/duration, page views, entry and exit page, bounce (at most one page view),
-- channel (of the session's first event), converted (a purchase happened), revenue (sum of
-- purchase values) and the mean of every score over the session's events.
CREATE OR REPLACE VIEW sessions AS
SELECT
    session_id,
    any_value(site_id) AS site_id,
    arg_min(visitor_id, timestamp) AS visitor_id,
    min(timestamp) AS start,
    max(timestamp) AS "end",
    date_diff('millisecond', min(timestamp), max(timestamp)) / 1000.0 AS duration_s,
    count(*) AS events,
    count(*) FILTER (WHERE event_type = 'page_view') AS pages,
    arg_min(path, timestamp) FILTER (WHERE event_type = 'page_view') AS entry_page,
    arg_max(path, timestamp) FILTER (WHERE event_type = 'page_view') AS exit_page,
    count(*) FILTER (WHERE event_type = 'page_view') <= 1 AS bounce,
    arg_min(channel, timestamp) AS channel,
    arg_min(utm_source, timestamp) AS utm_source,
    arg_min(utm_campaign, timestamp) AS utm_campaign,
    arg_min(device_type, timestamp) AS device_type,
    arg_min(country, timestamp) AS country,
    count(*) FILTER (WHERE event_type = 'purchase') > 0 AS converted,
    coalesce(sum(value) FILTER (WHERE event_type = 'purchase'), 0) AS revenue,
    avg(intent) AS intent,
    avg(engagement) AS engagement,
    avg(frustration) AS frustration,
    avg(purchase_timing) AS purchase_timing,
    avg(churn_risk) AS churn_risk,
    avg(content_affinity) AS content_affinity,
    avg(velocity) AS velocity,
    avg(loyalty) AS loyalty,
    avg(conversion_prob) AS conversion_prob,
    avg(session_quality) AS session_quality,
    avg(attention) AS attention,
    avg(nav_efficiency) AS nav_efficiency,
    avg(price_sensitivity) AS price_sensitivity,
    avg(social_proof) AS social_proof,
    avg(bot_probability) AS bot_probability,
    avg(channel_attribution) AS channel_attribution
FROM events
GROUP BY session_id;
