"""One test per Service rule, asserting the API server's exact message."""

import pytest

from testbed.k8s import Invalid

from .helpers import admission, svc

DNS1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
           "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
           "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
RFC1123_LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
                 "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def error(spec=None, name="web", adm=None, **meta):
    adm = adm or admission()
    with pytest.raises(Invalid) as e:
        adm.admit_create(svc(name, spec, **meta))
    return str(e.value)


def test_name_must_be_dns1035_label():
    assert error(name="1web") == f'Service "1web" is invalid: metadata.name: Invalid value: "1web": {DNS1035}'


def test_name_required():
    assert error(name="") == 'Service "" is invalid: metadata.name: Required value: name or generateName is required'


def test_labels_validated():
    msg = error(labels={"bad key": "v"})
    assert msg.startswith('Service "web" is invalid: metadata.labels: Invalid value: "bad key": name part must consist of')


def test_ports_required():
    assert error({"selector": {"app": "web"}}) == 'Service "web" is invalid: spec.ports: Required value'


def test_port_range():
    assert error({"ports": [{"port": 70000}]}) == (
        'Service "web" is invalid: [spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive, '
        'spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive]')


def test_port_names_required_when_several_ports():
    assert error({"ports": [{"port": 80}, {"port": 443, "name": "https"}]}) == (
        'Service "web" is invalid: spec.ports[0].name: Required value')


def test_port_name_dns_label():
    assert error({"ports": [{"port": 80, "name": "Http"}]}) == (
        f'Service "web" is invalid: spec.ports[0].name: Invalid value: "Http": {RFC1123_LABEL}')


def test_port_names_unique():
    assert error({"ports": [{"port": 80, "name": "http"}, {"port": 81, "name": "http"}]}) == (
        'Service "web" is invalid: spec.ports[1].name: Duplicate value: "http"')


def test_ports_unique_per_protocol():
    ok = admission().admit_create(svc(spec={"ports": [{"port": 53, "name": "a"}, {"port": 53, "name": "b", "protocol": "UDP"}]}))
    assert len(ok["spec"]["ports"]) == 2
    assert error({"ports": [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]}) == (
        'Service "web" is invalid: spec.ports[1]: Duplicate value: {"Name":"","Protocol":"TCP","AppProtocol":null,'
        '"Port":80,"TargetPort":0,"NodePort":0}')


def test_protocol_supported():
    assert error({"ports": [{"port": 80, "protocol": "ICMP"}]}) == (
        'Service "web" is invalid: spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"')


def test_target_port_number_or_iana_name():
    assert error({"ports": [{"port": 80, "targetPort": "http_alt"}]}) == (
        'Service "web" is invalid: spec.ports[0].targetPort: Invalid value: "http_alt": must contain only '
        'alpha-numeric characters (a-z, 0-9), and hyphens (-)')
    assert error({"ports": [{"port": 80, "targetPort": "a-very-long-port-name"}]}) == (
        'Service "web" is invalid: spec.ports[0].targetPort: Invalid value: "a-very-long-port-name": '
        'must be no more than 15 characters')
    assert error({"ports": [{"port": 80, "targetPort": "8080"}]}) == (
        'Service "web" is invalid: spec.ports[0].targetPort: Invalid value: "8080": must contain at least one letter (a-z)')


def test_target_port_defaults_to_port():
    s = admission().admit_create(svc(spec={"ports": [{"port": 8080}]}))
    assert s["spec"]["ports"][0] == {"port": 8080, "protocol": "TCP", "targetPort": 8080}


def test_type_supported():
    assert error({"type": "Headless", "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.type: Unsupported value: "Headless": supported values: "ClusterIP", '
        '"ExternalName", "LoadBalancer", "NodePort"')


def test_node_port_range():
    assert error({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}) == (
        'Service "web" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. '
        'The range of valid ports is 30000-32767')


def test_node_port_range_is_configurable():
    adm = admission(nodeport_range="31000-31010")
    assert error({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}, adm=adm).endswith(
        "The range of valid ports is 31000-31010")


def test_node_port_conflict():
    adm = admission()
    adm.admit_create(svc("a", {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}))
    assert error({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}, name="b", adm=adm) == (
        'Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated')


def test_node_port_forbidden_for_cluster_ip():
    assert error({"ports": [{"port": 80, "nodePort": 30080}]}) == (
        "Service \"web\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'")


def test_duplicate_node_ports():
    # different service ports asking for one node port: the allocator refuses first (as upstream)
    msg = error({"type": "NodePort", "ports": [{"port": 80, "name": "a", "nodePort": 30080},
                                               {"port": 81, "name": "b", "nodePort": 30080}]})
    assert msg == 'Service "web" is invalid: spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated'
    # same port+protocol twice: validation reports both duplicates
    msg = error({"type": "NodePort", "ports": [{"port": 80, "name": "a", "nodePort": 30080},
                                               {"port": 80, "name": "b", "nodePort": 30080}]})
    assert msg.startswith('Service "web" is invalid: [spec.ports[1].nodePort: Duplicate value: 30080, spec.ports[1]: Duplicate value:')
    # one node port shared by TCP and UDP on the same port number is fine
    s = admission().admit_create(svc(spec={"type": "NodePort", "ports": [
        {"port": 53, "name": "dns"}, {"port": 53, "name": "dns-udp", "protocol": "UDP"}]}))
    assert s["spec"]["ports"][0]["nodePort"] == s["spec"]["ports"][1]["nodePort"]


def test_cluster_ip_inside_service_cidr():
    assert error({"clusterIP": "192.168.1.1", "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.clusterIPs: Invalid value: ["192.168.1.1"]: failed to allocate IP 192.168.1.1: '
        'the provided IP (192.168.1.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12')


def test_cluster_ip_not_taken():
    adm = admission()
    adm.admit_create(svc("a", {"clusterIP": "10.96.5.5", "ports": [{"port": 80}]}))
    assert error({"clusterIP": "10.96.5.5", "ports": [{"port": 80}]}, adm=adm) == (
        'Service "web" is invalid: spec.clusterIPs: Invalid value: ["10.96.5.5"]: failed to allocate IP 10.96.5.5: '
        'provided IP is already allocated')


def test_cluster_ip_must_be_an_ip():
    assert error({"clusterIP": "10.96.0.300", "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address, '
        '(e.g. 10.9.8.7 or 2001:db8::ffff)')


def test_headless_service_gets_no_cluster_ip_and_may_omit_ports():
    s = admission().admit_create(svc(spec={"clusterIP": "None", "selector": {"app": "web"}}))
    assert s["spec"]["clusterIP"] == "None" and s["spec"]["clusterIPs"] == ["None"]
    assert s["spec"]["ipFamilies"] == ["IPv4"] and s["spec"]["ipFamilyPolicy"] == "SingleStack"


def test_headless_not_allowed_for_node_port():
    assert error({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}) == (
        "Service \"web\" is invalid: spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services")


def test_headless_not_allowed_for_load_balancer():
    assert error({"type": "LoadBalancer", "clusterIP": "None", "ports": [{"port": 80}]}) == (
        "Service \"web\" is invalid: spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services")


def test_headless_releases_node_ports_on_failure():
    adm = admission()
    error({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80, "nodePort": 30001}]}, adm=adm)
    assert not adm.allocators.ports.has(30001)


def test_external_name_required():
    assert error({"type": "ExternalName"}) == 'Service "web" is invalid: spec.externalName: Required value'


def test_external_name_dns_subdomain():
    assert error({"type": "ExternalName", "externalName": "Example.COM"}).startswith(
        'Service "web" is invalid: spec.externalName: Invalid value: "Example.COM": a lowercase RFC 1123 subdomain must')
    s = admission().admit_create(svc(spec={"type": "ExternalName", "externalName": "example.com."}))
    assert "clusterIP" not in s["spec"] and "ipFamilies" not in s["spec"]


def test_external_name_forbids_cluster_ip():
    assert error({"type": "ExternalName", "externalName": "example.com", "clusterIP": "10.96.0.5"}) == (
        'Service "web" is invalid: spec.clusterIPs: Forbidden: may not be set for ExternalName services')


def test_session_affinity_supported():
    assert error({"sessionAffinity": "Cookie", "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.sessionAffinity: Unsupported value: "Cookie": supported values: "ClientIP", "None"')


def test_session_affinity_timeout_default_and_range():
    s = admission().admit_create(svc(spec={"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}))
    assert s["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert error({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}},
                  "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: '
        'must be greater than 0 and less than 86400')


def test_external_traffic_policy_only_when_externally_accessible():
    assert error({"externalTrafficPolicy": "Local", "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.externalTrafficPolicy: Invalid value: "Local": may only be set for '
        'externally-accessible services')


def test_external_traffic_policy_values_and_default():
    s = admission().admit_create(svc(spec={"type": "NodePort", "ports": [{"port": 80}]}))
    assert s["spec"]["externalTrafficPolicy"] == "Cluster"
    assert error({"type": "NodePort", "externalTrafficPolicy": "Global", "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.externalTrafficPolicy: Unsupported value: "Global": supported values: "Cluster", "Local"')


def test_internal_traffic_policy_values_and_default():
    s = admission().admit_create(svc())
    assert s["spec"]["internalTrafficPolicy"] == "Cluster"
    assert error({"internalTrafficPolicy": "Node", "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.internalTrafficPolicy: Unsupported value: "Node": supported values: "Cluster", "Local"')


def test_health_check_node_port_allocated_for_lb_local():
    s = admission().admit_create(svc(spec={"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}))
    hc = s["spec"]["healthCheckNodePort"]
    assert 30000 <= hc <= 32767 and hc != s["spec"]["ports"][0]["nodePort"]
    assert s["spec"]["allocateLoadBalancerNodePorts"] is True


def test_health_check_node_port_only_for_lb_local():
    assert error({"type": "NodePort", "healthCheckNodePort": 30100, "ports": [{"port": 80}]}) == (
        "Service \"web\" is invalid: spec.healthCheckNodePort: Invalid value: 30100: may only be set when `type` is "
        "'LoadBalancer' and `externalTrafficPolicy` is 'Local'")


def test_load_balancer_source_ranges():
    assert error({"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/33"], "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.LoadBalancerSourceRanges[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR '
        'value, (e.g. 10.9.8.0/24 or 2001:db8::/64)')
    assert error({"loadBalancerSourceRanges": ["10.0.0.0/8"], "ports": [{"port": 80}]}) == (
        "Service \"web\" is invalid: spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'")


def test_external_ips_must_be_valid():
    assert error({"externalIPs": ["1.2.3"], "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.externalIPs[0]: Invalid value: "1.2.3": must be a valid IP address, '
        '(e.g. 10.9.8.7 or 2001:db8::ffff)')
    assert error({"externalIPs": ["127.0.0.1"], "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range '
        '(127.0.0.0/8, ::1/128)')


def test_ip_family_defaults_and_dual_stack_refused():
    s = admission().admit_create(svc())
    assert s["spec"]["ipFamilies"] == ["IPv4"] and s["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert error({"ipFamilyPolicy": "RequireDualStack", "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not '
        'configured for dual-stack services')
    assert error({"ipFamilies": ["IPv6"], "ports": [{"port": 80}]}) == (
        'Service "web" is invalid: spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster')


def test_selector_labels_validated():
    assert error({"selector": {"app": "no spaces"}, "ports": [{"port": 80}]}).startswith(
        'Service "web" is invalid: spec.selector: Invalid value: "no spaces": a valid label must be an empty string')
