package mongodb

// MetaMaxAge lets tests wait out the routing meta document's staleness.
const MetaMaxAge = metaMaxAge
