//! The network family ([`networks`]): new networks, many addresses at once, one address for
//! many users, impossible travel; and what an address counts as ([`net_of`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::{
    Context, DAY, Finding, HOUR, HashMap, HashSet, Held, MINUTE, NONE, Names, People, Row, runs,
    severity,
};

/// The network an address counts as: its known network's name, else its prefix (below).
pub(crate) fn net_of(ip: IpAddr, context: &Context) -> (String, bool) {
    if let Some(n) = context.network(ip) {
        return (n.name.clone(), true);
    }
    // Private space (RFC 1918, shared CGNAT space, unique local IPv6) is the organisation's
    // own, behind its NAT: a /16 of it is one network (a VPN pool hands out addresses across
    // many /24s). Public addresses are judged by their /24 (/48 for IPv6).
    let prefix = match ip {
        IpAddr::V4(v4)
            if v4.is_private() || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64) =>
        {
            16
        }
        IpAddr::V4(_) => 24,
        IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => 32,
        IpAddr::V6(_) => 48,
    };
    let net = ipnet::IpNet::new(ip, prefix)
        .map(|n| n.trunc().to_string())
        .unwrap_or_else(|_| ip.to_string());
    (net, false)
}

/// Great-circle distance in km.
fn km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// Network, four detectors:
/// * `new_network`: a warm user from a network outside the known ones that they never used,
///   unless three or more users moved to it within a day (a renumbering nobody configured),
///   the user comes back to it on another day (a new home, an office moved, a hotel), it
///   lies in a wider block (an ISP's /16) the user or three others already call from (a
///   carrier or a home ISP handing out another address), or the user has met three new
///   networks already (a roamer);
/// * `many_addresses`: one user from three networks or more within 15 minutes (each known
///   network counts once: a VPN pool hands out many addresses);
/// * `shared_address`: one address outside the known networks acting for three users or
///   more within an hour;
/// * `impossible_travel`: two calls of a user from known places farther apart than 900 km/h
///   allows.
pub(super) fn networks(h: &Held, people: &People, context: &Context, out: &mut Vec<Finding>) {
    /// What an address is, worked out once per address.
    struct Place<'c> {
        /// The network it counts as ([`net_of`]), by number in `nets`.
        net: u32,
        known: bool,
        /// Its wider block (a /16 of IPv4, a /32 of IPv6: an ISP's or a carrier's range), by
        /// number in `blocks`.
        block: Option<u32>,
        /// Its known network when that has a place (for impossible travel).
        located: Option<&'c crate::analytics::Network>,
    }
    let mut nets = Names::default();
    let mut blocks = Names::default();
    let places: Vec<Place> = h
        .ips
        .iter()
        .map(|&ip| {
            let (net, known) = net_of(ip, context);
            let prefix = match ip {
                IpAddr::V4(_) => 16,
                IpAddr::V6(_) => 32,
            };
            let block = ipnet::IpNet::new(ip, prefix)
                .ok()
                .map(|n| blocks.id(&n.trunc().to_string()));
            Place {
                net: nets.id(&net),
                known,
                block,
                located: context
                    .network(ip)
                    .filter(|n| n.lat.is_some() && n.lon.is_some()),
            }
        })
        .collect();
    let calls = &h.rows;
    let mut seen: Vec<HashSet<u32>> = vec![HashSet::default(); h.users.len()];
    let mut first_users: HashMap<u32, Vec<(u64, u32)>> = HashMap::default();
    let mut fresh: Vec<(&Row, u32, usize)> = Vec::new();
    let mut unknown_nets: HashMap<u32, usize> = HashMap::default();
    let mut fresh_nets: HashSet<u32> = HashSet::default();
    let mut recent: HashMap<u32, Vec<(&Row, u32)>> = HashMap::default();
    let mut by_ip: HashMap<u32, Vec<&Row>> = HashMap::default();
    let mut last_place: HashMap<u32, (&Row, &crate::analytics::Network)> = HashMap::default();
    let mut many: HashMap<u32, Vec<&Row>> = HashMap::default();
    for c in calls {
        if c.ip == NONE {
            continue;
        }
        let place = &places[c.ip as usize];
        let (net, known) = (place.net, place.known);
        if !known {
            by_ip.entry(c.ip).or_default().push(c);
        }
        if seen[c.user as usize].insert(net) {
            first_users.entry(net).or_default().push((c.at_ms, c.user));
            let ordinal = if known {
                0
            } else {
                let n = unknown_nets.entry(c.user).or_default();
                *n += 1;
                *n
            };
            if !known && people.warm(c.user, c.at_ms) && !people.service(c.user) {
                fresh_nets.insert(net);
                fresh.push((c, net, ordinal));
            }
        }
        // Several networks at once.
        let r = recent.entry(c.user).or_default();
        r.retain(|(d, _)| d.at_ms + 15 * MINUTE >= c.at_ms);
        r.push((c, net));
        let distinct: BTreeSet<u32> = r.iter().map(|(_, n)| *n).collect();
        if distinct.len() >= 3 {
            let v = many.entry(c.user).or_default();
            for (d, _) in r.iter() {
                if !v.iter().any(|x| x.id() == d.id()) {
                    v.push(d);
                }
            }
        }
        // Impossible travel between known places.
        if let Some(n) = place.located
            && let (Some(lat), Some(lon)) = (n.lat, n.lon)
        {
            if let Some((prev, pn)) = last_place.get(&c.user)
                && let (Some(plat), Some(plon)) = (pn.lat, pn.lon)
                && pn.name != n.name
            {
                let d = km((plat, plon), (lat, lon));
                let hours = (c.at_ms - prev.at_ms) as f64 / HOUR as f64;
                if d > 500.0 && d / hours.max(1.0 / 60.0) > 900.0 {
                    let user = h.user(c.user);
                    out.push(Finding::new(
                        "network",
                        "impossible_travel",
                        severity(d / hours.max(0.01), 2000.0, 5000.0),
                        serde_json::json!({"user": user}),
                        &[*prev, c],
                        format!(
                            "{user} was at {} then {:.1} h later at {} ({d:.0} km)",
                            pn.place.as_deref().unwrap_or(&pn.name),
                            hours,
                            n.place.as_deref().unwrap_or(&n.name)
                        ),
                    ));
                }
            }
            last_place.insert(c.user, (c, n));
        }
    }
    // The days each user called from each network, and the networks outside the known ones
    // each user first used, in order: a new home, an office moved, a hotel for a trip are
    // places the user comes back to on other days; a roaming user (a phone's carrier, many
    // hotels) meets new networks all the time.
    let mut days: HashMap<(u32, u32), HashSet<u64>> = HashMap::default();
    for c in calls {
        if c.ip != NONE {
            let net = places[c.ip as usize].net;
            if fresh_nets.contains(&net) {
                days.entry((c.user, net)).or_default().insert(c.at_ms / DAY);
            }
        }
    }
    // The wider block of each public network and who called from it: a user's new /24 in a
    // block they or three others already call from is their ISP handing out another address,
    // not a new place.
    let mut block_users: HashMap<u32, Vec<(u64, u32)>> = HashMap::default();
    for c in calls {
        if c.ip != NONE
            && let place = &places[c.ip as usize]
            && !place.known
            && let Some(b) = place.block
        {
            let users = block_users.entry(b).or_default();
            if !users.iter().any(|(_, u)| *u == c.user) {
                users.push((c.at_ms, c.user));
            }
        }
    }
    for (c, net, ordinal) in fresh {
        if ordinal > 3 {
            continue; // a roamer: their fourth new network or later
        }
        if let Some(users) = places[c.ip as usize]
            .block
            .and_then(|b| block_users.get(&b))
        {
            let mine_before = users.iter().any(|(t, u)| *u == c.user && *t < c.at_ms);
            let others = users.iter().filter(|(_, u)| *u != c.user).count();
            if mine_before || others >= 3 {
                continue;
            }
        }
        if days.get(&(c.user, net)).is_some_and(|d| d.len() >= 2) {
            continue;
        }
        let movers = first_users[&net]
            .iter()
            .filter(|(t, _)| t + DAY >= c.at_ms && *t <= c.at_ms + DAY)
            .count();
        if movers >= 3 {
            continue;
        }
        let user = h.user(c.user);
        out.push(Finding::new(
            "network",
            "new_network",
            "medium",
            serde_json::json!({"user": user}),
            &[c],
            format!(
                "{user} called from {}, outside the known networks and new for them",
                nets.get(net)
            ),
        ));
    }
    for (u, v) in many {
        let u = h.user(u);
        for run in runs(v, 15 * MINUTE) {
            out.push(Finding::new(
                "network",
                "many_addresses",
                severity(run.len() as f64, 6.0, 12.0),
                serde_json::json!({"user": u}),
                &run,
                format!("{u} called from three networks or more within 15 minutes"),
            ));
        }
    }
    for (ip, v) in by_ip {
        let ip = h.ips[ip as usize];
        for run in runs(v, HOUR) {
            let users: BTreeSet<&str> = run.iter().map(|c| h.user(c.user)).collect();
            if users.len() >= 3 {
                out.push(Finding::new(
                    "network",
                    "shared_address",
                    severity(users.len() as f64, 5.0, 8.0),
                    serde_json::json!({"ip": ip.to_string(), "users": users}),
                    &run,
                    format!("{ip} acted for {} users within an hour", users.len()),
                ));
            }
        }
    }
}
