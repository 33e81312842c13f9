//! Intel: endpoint knowledge as data (VPN provider and app names, platform domains, address
//! lists), built in and extendable by the user.
