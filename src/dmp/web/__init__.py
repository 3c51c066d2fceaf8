"""The web portals: registration desk, patient, legal representative and professional pages
(server-rendered, in French). Every page is one more adapter of the access gate."""
